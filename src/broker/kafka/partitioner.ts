import { type ICustomPartitioner, Partitioners } from "kafkajs"

/** Distinct keys remembered; past this the memo starts over (the platform's keys are its symbols). */
const MAX_KEYS = 10_000

/**
 * kafkajs' default (Java-compatible) partitioner, remembering each key's partition. For a message with a
 * key and no partition, the default's answer depends only on the key and the topic's partition count:
 * murmur2 of the key's bytes, computed with kafkajs' Long, plus a Buffer and a filtered copy of the
 * partition metadata per message, for the handful of symbols the platform sends. Everything else goes
 * to the default itself; test/kafkaPartitioner.test.ts compares the two.
 */
export const MemoizedDefaultPartitioner: ICustomPartitioner = () => {
  const inner = Partitioners.DefaultPartitioner()
  // per partition count, then per key: a topic that gains partitions gets new answers
  const memo = new Map<number, Map<string, number>>()
  let size = 0
  return (args) => {
    const { message, partitionMetadata } = args
    const key = message.key
    if (typeof key !== "string" || message.partition != null) return inner(args)
    const count = partitionMetadata.length
    let byKey = memo.get(count)
    const known = byKey?.get(key)
    if (known !== undefined) return known
    const partition = inner(args)
    if (size >= MAX_KEYS) {
      memo.clear()
      size = 0
      byKey = undefined
    }
    if (byKey === undefined) memo.set(count, (byKey = new Map()))
    byKey.set(key, partition)
    size++
    return partition
  }
}
