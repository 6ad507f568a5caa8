import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // A real Apache Kafka 4.1 broker for the Kafka tests (or KAFKA_BOOTSTRAP_SERVERS when set).
    globalSetup: ["test/support/kafkaGlobalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Each file gets its own process: servers, databases and brokers never leak between files.
    pool: "forks",
    fileParallelism: true,
    reporters: ["default"]
  }
})
