/**
 * The Kafka path's CPU per event, piece by piece (a breakdown for bench F, e2e-kafka): what the
 * `--role=producer` process does for each simulated event before Kafka has it, each piece timed alone
 * on the same events, in one process, no broker:
 *
 * - sim: `SimMarket.next()`, the event itself (src/domain/SimMarket.ts).
 * - codec: the message as the outbox builds it: `tickCodec.key`, `tickCodec.encode` (eventJson) and
 *   the contract's headers (src/broker/kafka/codec.ts, src/broker/kafka/outbox.ts).
 * - kafkajs, as the product sends: what `producer.send` builds from those messages in the bundle, per
 *   send of `--send` messages to a topic of 3 partitions: the partition of each message (the product's
 *   partitioner, src/broker/kafka/partitioner.ts), the messages grouped by partition
 *   (src/broker/kafka/groupMessages.ts), one record per message with the product's record encoder
 *   (src/broker/kafka/recordEncoder.ts), one RecordBatch (magic 2, CRC32C) per partition
 *   (kafkajs/src/protocol/recordBatch). scripts/build.mjs puts the grouping and the record encoder in
 *   place of kafkajs' own. The network and the broker are not part of it.
 * - kafkajs as shipped (baseline): the same with kafkajs' default partitioner, grouping and record
 *   encoder.
 * - without headers (experiment): kafkajs as shipped, for the same messages without the contract's
 *   two headers (`contract-version`, `content-type`; README, Kafka mode: Messages).
 * - the consumer's side: each of those records read back as kafkajs' batch decoder reads it, with the
 *   product's record decoder (src/broker/kafka/recordDecoder.ts, in kafkajs' place in the bundle)
 *   against kafkajs' own.
 *
 * Interleaved over `--rounds` rounds of `--events` events each (the three encodings in turns of
 * order); medians of ns per event.
 *
 *   node dist/bench/bench/kafka-encode.js [--events 50000] [--rounds 9] [--send 2500] [--symbols 10]
 */
import { createRequire } from "node:module"
import { parseArgs } from "node:util"
import type { Message } from "kafkajs"
import { makeSimMarket } from "../src/domain/SimMarket.js"
import type { Tick, TickerSymbol } from "../src/domain/Ticker.js"
import { tickCodec } from "../src/broker/kafka/codec.js"
import { type BatchContext, type KafkajsDecoder, type KafkajsLongClass, makeRecordDecoder } from "../src/broker/kafka/recordDecoder.js"
import { type KafkajsEncoderClass, makeRecordEncoder } from "../src/broker/kafka/recordEncoder.js"
import { groupMessagesPerPartition } from "../src/broker/kafka/groupMessages.js"
import { MemoizedDefaultPartitioner } from "../src/broker/kafka/partitioner.js"
import { type PartitionerArgs, Partitioners } from "kafkajs"
import { BENCH_SYMBOLS, fmt, machineLine, recordResults, runBench, transcript } from "./lib.js"
import { toMarkdown } from "./pipeline.js"

const { values: args } = parseArgs({
  options: {
    events: { type: "string", default: "50000" },
    rounds: { type: "string", default: "9" },
    send: { type: "string", default: "2500" },
    symbols: { type: "string", default: "10" }
  }
})
const events = Number(args.events)
const rounds = Number(args.rounds)
const sendSize = Number(args.send)
const symbols = BENCH_SYMBOLS.slice(0, Number(args.symbols)) as ReadonlyArray<string> as ReadonlyArray<TickerSymbol>

// kafkajs' protocol encoders: internal modules, stable across 2.x, with no typings.
interface Encoder {
  size(): number
}
const require = createRequire(import.meta.url)
type RecordFn = (r: { offsetDelta: number; timestampDelta: number; key: Message["key"]; value: Message["value"]; headers?: Message["headers"] }) => Encoder
const kafkajsRecord = require("kafkajs/src/protocol/recordBatch/record/v0/index.js") as RecordFn
const productRecord = makeRecordEncoder(require("kafkajs/src/protocol/encoder.js") as KafkajsEncoderClass) as unknown as RecordFn
const { RecordBatch } = require("kafkajs/src/protocol/recordBatch/v0/index.js") as {
  RecordBatch: (b: { compression: number; records: ReadonlyArray<Encoder>; firstTimestamp: number; maxTimestamp: number }) => Promise<Encoder>
}
const kafkajsGroup = require("kafkajs/src/producer/groupMessagesPerPartition.js") as typeof groupMessagesPerPartition
/** What kafkajs' send does before the request, one way or the other. */
interface Variant {
  readonly partitioner: () => (args: PartitionerArgs) => number
  readonly group: typeof groupMessagesPerPartition
  readonly record: RecordFn
}
const product: Variant = { partitioner: MemoizedDefaultPartitioner, group: groupMessagesPerPartition, record: productRecord }
const shipped: Variant = { partitioner: Partitioners.DefaultPartitioner, group: kafkajsGroup, record: kafkajsRecord }
const partitionMetadata = [0, 1, 2].map((partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] })) as unknown as PartitionerArgs["partitionMetadata"]
const Decoder = require("kafkajs/src/protocol/decoder.js") as new (buffer: Buffer | null) => KafkajsDecoder
type DecodeFn = (decoder: KafkajsDecoder, context: BatchContext) => { readonly offset: string }
const kafkajsDecode = require("kafkajs/src/protocol/recordBatch/record/v0/decoder.js") as DecodeFn
const productDecode = makeRecordDecoder(
  require("kafkajs/src/utils/long.js") as KafkajsLongClass,
  (require("kafkajs/src/protocol/timestampTypes.js") as { LOG_APPEND_TIME: number }).LOG_APPEND_TIME
) as unknown as DecodeFn

/** The consumer's side: each record of a fetched batch read as kafkajs' batch decoder reads it (one context per batch). */
const decodeAll = (decode: DecodeFn, records: ReadonlyArray<Buffer>): number => {
  let n = 0
  for (let from = 0; from < records.length; from += sendSize) {
    const context: BatchContext = { firstOffset: String(1_000_000 + from), firstTimestamp: String(Date.now()), magicByte: 2, timestampType: 0, maxTimestamp: "0" }
    for (const bytes of records.slice(from, from + sendSize)) n += decode(new Decoder(new Decoder(bytes).readVarIntBytes()), context).offset.length
  }
  return n
}

const nowNs = () => process.hrtime.bigint()
const perEvent = (started: bigint) => Number(nowNs() - started) / events

const simulate = (): Array<Tick> => {
  const market = makeSimMarket({ seed: 7, eventsPerSecond: 50_000, symbols, startMicros: Date.UTC(2026, 11, 1) * 1000 })
  const out = new Array<Tick>(events)
  for (let i = 0; i < events; i++) out[i] = market.next()
  return out
}

const toMessages = (ticks: ReadonlyArray<Tick>): Array<Message> =>
  ticks.map((t) => ({ key: tickCodec.key(t), value: tickCodec.encode(t), headers: tickCodec.headers }))

/** kafkajs' work for `messages` from send to bytes, in sends of `sendSize`: partitions, grouping, records, a record batch per partition. */
const kafkajsEncode = async (v: Variant, messages: ReadonlyArray<Message>): Promise<number> => {
  let bytes = 0
  const partitioner = v.partitioner()
  for (let from = 0; from < messages.length; from += sendSize) {
    const byPartition = v.group({ topic: "bench", partitionMetadata, messages: messages.slice(from, from + sendSize), partitioner })
    const now = Date.now()
    for (const part of Object.values(byPartition)) {
      const records = part.map((m, i) => v.record({ offsetDelta: i, timestampDelta: 0, key: m.key, value: m.value, headers: m.headers }))
      bytes += (await RecordBatch({ compression: 0, records, firstTimestamp: now, maxTimestamp: now })).size()
    }
  }
  return bytes
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const main = async () => {
  const out = transcript()
  const print = out.print
  print(
    `bench: the Kafka path's CPU per event, piece by piece (the producer's, then the consumer's reading of the records): ${events.toLocaleString("en-US")} simulated events over ${symbols.length} symbols, ` +
      `sends of ${sendSize.toLocaleString("en-US")} messages, ${rounds} rounds interleaved, medians`
  )
  print("")
  print(machineLine())
  const samples: Record<string, Array<number>> = {}
  const add = (name: string, ns: number) => (samples[name] ??= []).push(ns)
  const bytes: Record<string, number> = {}
  for (let round = 0; round <= rounds; round++) {
    let t = nowNs()
    const ticks = simulate()
    const sim = perEvent(t)
    t = nowNs()
    const messages = toMessages(ticks)
    const codec = perEvent(t)
    const bare = messages.map((m): Message => ({ key: m.key ?? null, value: m.value }))
    const variants: ReadonlyArray<readonly [string, Variant, ReadonlyArray<Message>]> = [
      ["sent", product, messages],
      ["kafkajs", shipped, messages],
      ["bare", shipped, bare]
    ]
    // Each variant takes each place in turn: the first after the messages were built pays for more of their garbage.
    for (let i = 0; i < variants.length; i++) {
      const [name, variant, input] = variants[(round + i) % variants.length]!
      t = nowNs()
      bytes[name] = await kafkajsEncode(variant, input)
      if (round > 0) add(name, perEvent(t))
    }
    const recordBytes = messages.map((msg, i) => (productRecord({ offsetDelta: i % sendSize, timestampDelta: i % 7, key: msg.key ?? null, value: msg.value, headers: msg.headers }) as unknown as { buffer: Buffer }).buffer)
    for (let i = 0; i < 2; i++) {
      const [name, decode] = (round + i) % 2 === 0 ? (["decode", productDecode] as const) : (["decodeKafkajs", kafkajsDecode] as const)
      t = nowNs()
      decodeAll(decode, recordBytes)
      if (round > 0) add(name, perEvent(t))
    }
    if (round === 0) continue // warm-up
    add("sim", sim)
    add("codec", codec)
  }
  const m = (name: string) => median(samples[name]!)
  const total = m("sim") + m("codec") + m("sent")
  print("")
  print("| piece (per event) | ns, median | share of the three |")
  print("|---|---:|---:|")
  for (const [label, name] of [
    ["sim: SimMarket.next()", "sim"],
    ["codec: key, eventJson, headers", "codec"],
    ["kafkajs, as the product sends: partitions, grouping, the product's record encoder, RecordBatch + CRC32C", "sent"]
  ] as const) {
    print(`| ${label} | ${fmt(m(name), 0)} | ${fmt((100 * m(name)) / total, 0)} % |`)
  }
  print(`| kafkajs as shipped: its partitioner, grouping and record encoder (baseline) | ${fmt(m("kafkajs"), 0)} | |`)
  print(`| kafkajs as shipped, without headers (experiment) | ${fmt(m("bare"), 0)} | |`)
  print("")
  print("consumer side: each record of a fetched batch read back (key, value, headers, offset and timestamp as strings), as kafkajs' batch decoder does")
  print("")
  print("| piece (per event) | ns, median |")
  print("|---|---:|")
  print(`| the product's record decoder | ${fmt(m("decode"), 0)} |`)
  print(`| kafkajs' own record decoder (baseline) | ${fmt(m("decodeKafkajs"), 0)} |`)
  print("")
  const headers = m("kafkajs") - m("bare")
  if (bytes["sent"] !== bytes["kafkajs"]) throw new Error(`the product's records are ${bytes["sent"]} bytes, kafkajs' ${bytes["kafkajs"]}: they must be the same`)
  print(
    `kafkajs as the product sends: ${fmt(m("sent"), 0)} against kafkajs as shipped ${fmt(m("kafkajs"), 0)} ns per event (${fmt(m("kafkajs") / m("sent"), 2)} ×), the same ${fmt(bytes["sent"]! / events, 0)} bytes per record; ` +
      `the contract's two headers with kafkajs as shipped: ${fmt(headers, 0)} ns (${fmt((100 * headers) / m("kafkajs"), 0)} %), ${fmt((bytes["kafkajs"]! - bytes["bare"]!) / events, 0)} bytes per record; ` +
      `the product's record decoder: ${fmt(m("decode"), 0)} against kafkajs' own ${fmt(m("decodeKafkajs"), 0)} ns per event (${fmt(m("decodeKafkajs") / m("decode"), 2)} ×)`
  )
  recordResults("kafka-encode", toMarkdown(out.lines))
  return true
}

runBench("kafka-encode", main)
