/**
 * kafkajs' groupMessagesPerPartition (kafkajs/src/producer/groupMessagesPerPartition.js, kafkajs
 * 2.2.4), in linear time: kafkajs copies a partition's array for every message it adds, so a send of n
 * messages costs O(n²) copies (a send here carries up to 5,000). Same partitioner calls in the same
 * order, the same object of arrays in message order (test/kafkaPartitioner.test.ts). scripts/build.mjs
 * puts it in place of kafkajs' module in the bundle.
 */

export interface GroupArgs<M, P extends { readonly length: number }> {
  readonly topic: string
  readonly partitionMetadata: P
  readonly messages: ReadonlyArray<M>
  readonly partitioner: (args: { topic: string; partitionMetadata: P; message: M }) => number
}

export const groupMessagesPerPartition = <M, P extends { readonly length: number }>({
  messages,
  partitionMetadata,
  partitioner,
  topic
}: GroupArgs<M, P>): Record<number, Array<M>> => {
  const result: Record<number, Array<M>> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition]
    if (current === undefined) result[partition] = [message]
    else current.push(message)
  }
  return result
}
