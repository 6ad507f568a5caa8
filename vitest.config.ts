import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Each file gets its own process: servers, databases and brokers never leak between files.
    pool: "forks",
    fileParallelism: true,
    reporters: ["default"]
  }
})
