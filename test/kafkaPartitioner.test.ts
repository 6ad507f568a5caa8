import { FastCheck as fc } from "effect"
import { Partitioners, type PartitionerArgs } from "kafkajs"
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"
import { groupMessagesPerPartition } from "../src/broker/kafka/groupMessages.js"
import { MemoizedDefaultPartitioner } from "../src/broker/kafka/partitioner.js"

// kafkajs' own grouping, which the bundle replaces with the product's
const require = createRequire(import.meta.url)
const kafkajsGroup = require("kafkajs/src/producer/groupMessagesPerPartition.js") as typeof groupMessagesPerPartition

const metadata = (count: number, down: ReadonlyArray<number> = []) =>
  Array.from({ length: count }, (_, partitionId) => ({
    partitionId,
    leader: down.includes(partitionId) ? -1 : 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0]
  })) as unknown as PartitionerArgs["partitionMetadata"]

const symbols = fc.oneof(fc.constantFrom("BTCUSDT", "ETHUSDT", "SOLUSDT", "ÉTHUSDT", ""), fc.string(), fc.string({ unit: "binary" }))

describe("the producer's partitioner", () => {
  it("puts every keyed message where kafkajs' default partitioner puts it, as the partition count changes", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(symbols, fc.integer({ min: 1, max: 64 })), { minLength: 1, maxLength: 200 }), (sends) => {
        const ours = MemoizedDefaultPartitioner()
        const theirs = Partitioners.DefaultPartitioner()
        for (const [key, count] of sends) {
          const args = { topic: "t", partitionMetadata: metadata(count), message: { key, value: "v" } }
          expect(ours(args)).toBe(theirs(args))
        }
      }),
      { numRuns: 300 }
    )
  })

  it("keeps a message's own partition, and spreads messages without a key over the partitions that have a leader", () => {
    const ours = MemoizedDefaultPartitioner()
    expect(ours({ topic: "t", partitionMetadata: metadata(3), message: { key: "BTCUSDT", value: "v", partition: 2 } })).toBe(2)
    const seen = new Set<number>()
    for (let i = 0; i < 30; i++) seen.add(ours({ topic: "t", partitionMetadata: metadata(4, [1]), message: { key: null, value: "v" } }))
    expect([...seen].sort()).toEqual([0, 2, 3])
  })

  it("gives the same answers after more distinct keys than it remembers", () => {
    const ours = MemoizedDefaultPartitioner()
    const theirs = Partitioners.DefaultPartitioner()
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 12_000; i += 7) {
        const args = { topic: "t", partitionMetadata: metadata(6), message: { key: `SYM${i}USDT`, value: "v" } }
        expect(ours(args)).toBe(theirs(args))
      }
    }
  })
})

describe("the grouping of a send's messages by partition the bundle uses in place of kafkajs' own", () => {
  it("calls the partitioner as kafkajs does and returns the same partitions, each with its messages in order", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 300 }), fc.integer({ min: 0, max: 10 }), (partitions, count) => {
        const messages = partitions.map((partition, i) => ({ key: `k${i}`, value: String(i), partition }))
        const run = (group: typeof groupMessagesPerPartition) => {
          const calls: Array<string> = []
          const result = group({
            topic: "t",
            partitionMetadata: metadata(count),
            messages,
            partitioner: ({ message, topic }) => {
              calls.push(`${topic}:${message.key}`)
              return message.partition
            }
          })
          return { calls, result, keys: Object.keys(result) }
        }
        expect(run(groupMessagesPerPartition)).toStrictEqual(run(kafkajsGroup))
      }),
      { numRuns: 500 }
    )
  })
})
