import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    /** host:port of the Kafka broker the Kafka tests use. */
    kafkaBootstrap: string
    /** Whether that broker was started here (then Java is available to start more, e.g. to restart one). */
    kafkaLocal: boolean
  }
}

/** What `scripts/kafka.mjs` exports (a plain .mjs, without type declarations). */
export interface LocalKafka {
  readonly bootstrap: string
  readonly pid: number
  readonly stop: () => Promise<void>
  readonly restart: () => Promise<void>
}
export interface KafkaScript {
  readonly startKafka: (options?: { readonly partitions?: number }) => Promise<LocalKafka>
}

/** `scripts/kafka.mjs`, imported by URL so that TypeScript does not look for its types. */
export const loadKafkaScript = (): Promise<KafkaScript> =>
  import(new URL("../../scripts/kafka.mjs", import.meta.url).href) as Promise<KafkaScript>

/**
 * Gives the Kafka tests a broker: KAFKA_BOOTSTRAP_SERVERS when it is set, otherwise a fresh local
 * Kafka 4.1 (scripts/kafka.mjs) that is stopped after the run.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const external = process.env["KAFKA_BOOTSTRAP_SERVERS"]
  if (external !== undefined && external.trim() !== "") {
    project.provide("kafkaBootstrap", external.trim())
    project.provide("kafkaLocal", false)
    return undefined
  }
  const kafka = await (await loadKafkaScript()).startKafka()
  project.provide("kafkaBootstrap", kafka.bootstrap)
  project.provide("kafkaLocal", true)
  return () => kafka.stop()
}
