import { Cause, Clock, Duration, Effect, Exit } from "effect"
import { Readable } from "node:stream"
import * as AppConfig from "../../Config.js"
import { type LiveRow, LiveReads } from "../../store/LiveReads.js"
import { type Filter, type Kind, Kinds, makeFilter, ReplayBuffer } from "./ReplayBuffer.js"

/**
 * The events of GET /stream, shared by every client of one server. The feed polls the store (not the
 * broker), so it works in every role and mode, the api role of Kafka mode included: every POLL
 * it reads, per symbol, the ticks, trades and closed 1m candles stored after what it last saw, each
 * through a primary key. It numbers them in the order of their instants and appends them to one
 * ReplayBuffer; each client reads that ring from its own cursor, and clients with the same filter at
 * the same place share one encoded answer. It reads only while a client is connected and for the
 * replay window after the last one left (the ring then serves reconnects); idle, it holds nothing.
 *
 * A client's body is a Node Readable the response pipes, not an Effect Stream: Node's backpressure
 * is the same, but a Stream's channel machinery allocated kilobytes per write, and with 1,000 clients
 * that garbage made V8 grow its heap by hundreds of MB (bench/README.md, bench (I)).
 */

const POLL = Duration.millis(250)
/** The next poll when the last one stopped at READ_LIMIT: catching up goes at full speed. */
const POLL_BEHIND = Duration.millis(10)
/** Rows one poll reads per symbol and kind, so one poll never holds the event loop for long. */
const READ_LIMIT = 1_000
/** The replay window: Last-Event-ID resumes without a gap within it. */
export const REPLAY_MAX_EVENTS = 100_000
export const REPLAY_MAX_AGE_MS = 5 * 60_000
/** Room for 100,000 frames of ~300 bytes; fewer when they are larger. */
const REPLAY_MAX_BYTES = 32 * 1024 * 1024
/** Events one write to a client carries (about 64 KB): all a socket that stops reading holds in Node. */
const CHUNK_EVENTS = 256
/**
 * A client's outbox: the events appended since it last took any. One that has not taken this many
 * (its socket is not draining) is dropped; its browser reconnects and resumes from the ring.
 */
export const OUTBOX_EVENTS = 5_000
const SYMBOLS_EVERY_MS = 5_000
const MINUTE_MS = 60_000


const encoder = new TextEncoder()
const HEARTBEAT = encoder.encode(": heartbeat\n\n")

/** What one GET /stream asked for, and how to end its connection. */
export interface Subscription {
  readonly kinds: ReadonlyArray<Kind> | undefined
  readonly symbols: ReadonlyArray<string> | undefined
  /** The last id the client got (Last-Event-ID): it is given every later event still held. */
  readonly lastEventId: number | undefined
  /** Ends the connection at once: how a client that stops reading is dropped (its write may never finish). */
  readonly drop: () => void
  /** The listening server: the streams end when it stops listening (a shutdown), not at its grace's cut. */
  readonly server: { readonly listening: boolean } | undefined
}

interface Client {
  readonly filter: Filter
  readonly drop: () => void
  readonly push: (bytes: Uint8Array | null) => void
  /** Its body asked for more and there was nothing: the next news is pushed to it at once. */
  waiting: boolean
  /** The last id this client has been given (or looked past: its filter did not take it). */
  cursor: number
  /** `buffer.next` when it last took events: how full its outbox is. */
  takenAt: number
  heartbeats: number
  preamble: Uint8Array | undefined
  ended: boolean
}

/** Where the feed stands in one symbol's rows: the last key it has read of each kind. */
interface Cursor {
  tickUs: number
  tradeId: number
  klineOpen: number
  /** The last tick minute (open time, ms) looked at: sent once a tick of a later minute is stored. */
  tickMinute: number
}

const minuteOf = (us: number) => Math.floor(us / (MINUTE_MS * 1000)) * MINUTE_MS

const KIND: Readonly<Record<Kind, number>> = { ticker: 0, trade: 1, candle: 2 }

export class LiveFeed extends Effect.Service<LiveFeed>()("api/LiveFeed", {
  scoped: Effect.gen(function* () {
    const reads = yield* LiveReads
    const configured: ReadonlyArray<string> = yield* AppConfig.symbols
    const heartbeat = Duration.seconds(yield* AppConfig.sseHeartbeatSeconds)
    // Ids start at the start instant in µs: a later process's ids are higher than an earlier one's,
    // so a Last-Event-ID from before a restart reads as older than the ring, never as a future id.
    const firstId = (yield* Clock.currentTimeMillis) * 1000
    const buffer = new ReplayBuffer(REPLAY_MAX_EVENTS, REPLAY_MAX_BYTES, REPLAY_MAX_AGE_MS, firstId, CHUNK_EVENTS)
    const clients = new Set<Client>()
    const servers = new Set<{ readonly listening: boolean }>()
    const cursors = new Map<string, Cursor>()
    let active = false
    let lastClientAt = 0
    let symbolsReadAt = 0
    let seenVersion: number | string | undefined
    let behind = false
    let heartbeats = 0
    let dropped = 0
    let signalled = buffer.version
    const answers = new Map<string, { readonly bytes: Uint8Array | undefined; readonly cursor: number }>()
    let answersVersion = buffer.version

    /** Hands `client` what it is to be sent now, or notes that it waits; its end once it is ended. */
    const pump = (client: Client) => {
      client.waiting = false
      if (client.ended) return client.push(null)
      const out = takeFor(client)
      client.waiting = out.length === 0
      for (const bytes of out) client.push(bytes)
    }

    /** Gives every waiting client its news. */
    const signal = () => {
      for (const client of clients) if (client.waiting) pump(client)
    }

    const startCursor = (symbol: string, now: number) =>
      Effect.map(reads.newest(symbol), (newest): Cursor => ({
        tickUs: newest.tickUs ?? -1,
        tradeId: newest.tradeId ?? -1,
        // with no kline yet, history a backfill writes later is not news: only bars closing from now on
        klineOpen: newest.klineOpen ?? minuteOf(now * 1000) - 2 * MINUTE_MS,
        tickMinute: newest.tickUs === null ? -1 : minuteOf(newest.tickUs) - MINUTE_MS
      }))

    /** Symbols configured or stored; one first seen is followed from then on. */
    const followSymbols = (now: number) =>
      Effect.flatMap(reads.symbols, (stored) =>
        Effect.forEach(
          [...configured, ...stored],
          (symbol) => (cursors.has(symbol) ? Effect.void : Effect.map(startCursor(symbol, now), (c) => void cursors.set(symbol, c))),
          { discard: true }
        )
      )

    /**
     * Reads what was stored since the last look, then appends it ordered by instant. The cursors move
     * only once every read has succeeded, in the same synchronous step as the append: a poll whose read
     * fails changes nothing, and the next one reads the same rows again.
     */
    const readNew = (now: number) =>
      Effect.gen(function* () {
        const found: Array<{ readonly row: LiveRow; readonly kind: number; readonly symbol: string }> = []
        const moved: Array<readonly [Cursor, Cursor]> = []
        let full = false
        const collect = (rows: ReadonlyArray<LiveRow>, kind: number, symbol: string) => {
          for (const row of rows) found.push({ row, kind, symbol })
          if (rows.length === READ_LIMIT) full = true
          return rows.length === 0 ? undefined : rows[rows.length - 1]!.key
        }
        for (const [symbol, c] of cursors) {
          const next = { ...c }
          next.tickUs = collect(yield* reads.ticksAfter(symbol, c.tickUs, READ_LIMIT), KIND.ticker, symbol) ?? c.tickUs
          next.tradeId = collect(yield* reads.tradesAfter(symbol, c.tradeId, READ_LIMIT), KIND.trade, symbol) ?? c.tradeId
          next.klineOpen = collect(yield* reads.klinesAfter(symbol, c.klineOpen, READ_LIMIT), KIND.candle, symbol) ?? c.klineOpen
          // a tick minute is over once a tick of a later minute is stored; a stored kline of it wins
          const closedBefore = next.tickUs < 0 ? -1 : minuteOf(next.tickUs)
          if (closedBefore - MINUTE_MS > c.tickMinute) {
            const minutes = yield* reads.tickMinutesAfter(symbol, c.tickMinute, closedBefore, READ_LIMIT)
            collect(minutes.filter((m) => !m.hasKline), KIND.candle, symbol)
            next.tickMinute = minutes.length === READ_LIMIT ? minutes[minutes.length - 1]!.key : closedBefore - MINUTE_MS
            if (minutes.length === READ_LIMIT) full = true
          }
          moved.push([c, next])
        }
        for (const [c, next] of moved) Object.assign(c, next)
        behind = full
        found.sort((a, b) => a.row.timeUs - b.row.timeUs)
        for (const { kind, row, symbol } of found) buffer.append(kind, symbol, row.json, now)
      })

    /** Drops the clients whose outbox is full or whose next event has left the ring. */
    const dropLaggards = () => {
      for (const client of clients) {
        if (client.ended) continue
        if (buffer.next - client.takenAt > OUTBOX_EVENTS || client.cursor + 1 < buffer.oldest) {
          client.ended = true
          dropped++
          client.drop()
        }
      }
    }

    const endAll = () => {
      for (const client of clients) client.ended = true
      signal()
    }

    /** One poll. Its reads are effects; what clients see of it is appended in one synchronous step. */
    const step = (now: number) =>
      Effect.gen(function* () {
        for (const server of servers) {
          if (!server.listening) return endAll()
        }
        if (clients.size > 0) lastClientAt = now
        else if (!active || now - lastClientAt > REPLAY_MAX_AGE_MS) {
          if (active) {
            active = false
            buffer.clear()
            cursors.clear()
          }
          return
        }
        if (!active) {
          // from now on: nothing stored before the first client arrived is sent
          active = true
          symbolsReadAt = -Infinity
          seenVersion = undefined
        }
        dropLaggards()
        if (now - symbolsReadAt >= SYMBOLS_EVERY_MS) {
          yield* followSymbols(now)
          symbolsReadAt = now
        }
        const version = yield* reads.dataVersion
        if (version !== seenVersion || behind) {
          yield* readNew(now)
          seenVersion = version // only once read: a failed read is tried again at the next poll
        }
        buffer.expire(now)
        if (buffer.version !== signalled) {
          signalled = buffer.version
          signal()
        }
      })

    /** What `client` is to be sent now: the preamble, a heartbeat, the next events; empty when nothing. */
    const takeFor = (client: Client): Array<Uint8Array> => {
      const out: Array<Uint8Array> = []
      if (client.preamble !== undefined) out.push(client.preamble)
      client.preamble = undefined
      if (client.heartbeats !== heartbeats) out.push(HEARTBEAT)
      client.heartbeats = heartbeats
      if (answersVersion !== buffer.version) {
        answers.clear()
        answersVersion = buffer.version
      }
      while (client.cursor < buffer.next - 1) {
        const key = `${client.filter.key}@${client.cursor}`
        let answer = answers.get(key)
        if (answer === undefined) {
          answer = buffer.take(client.filter, client.cursor)
          answers.set(key, answer)
        }
        client.cursor = answer.cursor
        if (answer.bytes !== undefined) {
          out.push(answer.bytes)
          break
        }
      }
      client.takenAt = buffer.next
      return out
    }

    const register = (sub: Subscription, push: Client["push"]): Client => {
      const live = buffer.next - 1
      const n = sub.lastEventId
      let cursor = live
      let note = ""
      if (n !== undefined && n > live) note = `: Last-Event-ID ${n} is not an id of this server; live events follow\n\n`
      else if (n !== undefined && n + 1 < buffer.oldest) {
        cursor = buffer.oldest - 1
        note = `: the events after id ${n} up to id ${cursor} are no longer held; the held ones follow\n\n`
      } else if (n !== undefined) cursor = n
      if (sub.server !== undefined) servers.add(sub.server)
      const client: Client = {
        filter: makeFilter(sub.kinds, sub.symbols),
        drop: sub.drop,
        push,
        waiting: false,
        cursor,
        takenAt: buffer.next,
        heartbeats,
        preamble: encoder.encode(`retry: 1000\n\n${note}`),
        ended: false
      }
      clients.add(client)
      return client
    }

    const pollLoop = Effect.gen(function* () {
      let failing = false
      for (;;) {
        const now = yield* Clock.currentTimeMillis
        // a failed poll (a read failed, or a defect) is skipped: the feed lives on and tries again
        const exit = yield* Effect.exit(step(now))
        const failed = Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
        if (failed && !failing) {
          yield* Effect.logWarning("live feed: reading the store failed; trying again every poll", exit.cause)
        } else if (!failed && failing) yield* Effect.logInfo("live feed: reading the store again")
        failing = failed
        if (Exit.isFailure(exit) && !failed) return yield* exit
        yield* Effect.sleep(behind ? POLL_BEHIND : POLL)
      }
    })
    const heartbeatLoop = Effect.forever(
      Effect.zipRight(
        Effect.sleep(heartbeat),
        Effect.sync(() => {
          heartbeats++
          signal()
        })
      )
    )
    yield* Effect.forkScoped(Effect.tapErrorCause(Effect.all([pollLoop, heartbeatLoop], { concurrency: 2, discard: true }), Effect.logError))
    yield* Effect.addFinalizer(() => Effect.sync(endAll))

    return {
      /**
       * The SSE body of one client: `retry: 1000`, a comment when its Last-Event-ID cannot be honoured
       * exactly, then its events and heartbeats, until it is dropped, the server stops or it leaves.
       */
      subscribe: (sub: Subscription): Readable => {
        let client: Client | undefined
        let finished = false
        const body: Readable = new Readable({
          // nothing queued ahead: the body asks (read) only when the socket has taken the last write
          highWaterMark: 0,
          read() {
            // registered when the response starts taking it: a body never sent holds nothing
            client ??= register(sub, (bytes) => {
              if (finished) return
              finished = bytes === null
              body.push(bytes)
            })
            pump(client)
          },
          destroy(error, callback) {
            if (client !== undefined) {
              client.ended = true
              clients.delete(client)
            }
            callback(error)
          }
        })
        return body
      },
      /** Connected clients, events held, and clients dropped for not reading. */
      status: Effect.sync(() => ({ clients: clients.size, held: buffer.size, dropped, nextId: buffer.next }))
    } as const
  })
}) {}

export { Kinds, type Kind }
