import { Duration, Effect, Option, Runtime, type Scope } from "effect"
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client"
import type { Candle } from "../domain/Candles.js"
import type { Tick } from "../domain/Ticker.js"
import type { Trade } from "../domain/Trade.js"

/**
 * The process's Prometheus metrics (GET /metrics): one prom-client Registry, its metric objects made
 * once, with the default process metrics. Instrumented code takes the service with
 * `Effect.serviceOption(Metrics)`, so code run without it (most tests) counts nothing and pays nothing.
 */

/** The kinds of market events, as every metric labels them. */
export type EventKind = "ticker" | "trade" | "bar"

/** Where an event's labels come from: plain field reads, done per event. */
export interface EventLabels<A> {
  readonly kind: EventKind
  readonly source: (value: A) => string
  readonly symbol: (value: A) => string
}

/** Closed 1m bars come from Binance's kline stream only. */
export const BAR_SOURCE = "binance_ws_kline_1m"

export const tickerLabels: EventLabels<Tick> = { kind: "ticker", source: (t) => t.event.source, symbol: (t) => t.symbol }
export const tradeLabels: EventLabels<Trade> = { kind: "trade", source: (t) => t.source, symbol: (t) => t.symbol }
export const barLabels: EventLabels<Candle> = { kind: "bar", source: () => BAR_SOURCE, symbol: (c) => c.symbol }

/** The counted steps of an event: handed to the broker, taken by the consumer, stored, moved to a DLQ. */
export type EventStage = "published" | "received" | "stored" | "dead_lettered"

type EventLabel = "kind" | "source" | "symbol"

/**
 * Counts events of one kind per (source, symbol) with one prom-client call per pair and batch: the
 * label object of each pair is built once and kept, so an event costs two map lookups. `add` holds
 * counts until `commit` (after the transaction that stored them) or `discard` (it rolled back).
 */
export interface EventTally<A> {
  readonly add: (value: A) => void
  readonly commit: () => void
  readonly discard: () => void
  /** `add` each, then `commit`. */
  readonly count: (values: ReadonlyArray<A>) => void
}

interface Cell {
  readonly labels: Readonly<Record<EventLabel, string>>
  pending: number
}

const makeTally = <A>(counter: Counter<EventLabel>, labels: EventLabels<A>): EventTally<A> => {
  const cells = new Map<string, Map<string, Cell>>()
  const touched: Array<Cell> = []
  const add = (value: A) => {
    const symbol = labels.symbol(value)
    const source = labels.source(value)
    let bySource = cells.get(symbol)
    if (bySource === undefined) cells.set(symbol, (bySource = new Map()))
    let cell = bySource.get(source)
    if (cell === undefined) bySource.set(source, (cell = { labels: { kind: labels.kind, source, symbol }, pending: 0 }))
    if (cell.pending === 0) touched.push(cell)
    cell.pending++
  }
  const commit = () => {
    for (const cell of touched) {
      counter.inc(cell.labels, cell.pending)
      cell.pending = 0
    }
    touched.length = 0
  }
  const discard = () => {
    for (const cell of touched) cell.pending = 0
    touched.length = 0
  }
  return {
    add,
    commit,
    discard,
    count: (values) => {
      for (const value of values) add(value)
      commit()
    }
  }
}

/** One value of a gauge read at scrape time. */
export interface Sample<L extends string> {
  readonly labels: Readonly<Record<L, string>>
  readonly value: number
}

/** What a scrape-time gauge runs at each scrape; a failure only leaves its samples out of that scrape. */
export type Probe<L extends string> = Effect.Effect<ReadonlyArray<Sample<L>>, unknown>

/** A gauge computed at scrape time from what its probes report. */
export interface GaugeSpec<L extends string> {
  readonly name: string
  readonly help: string
  readonly labelNames: ReadonlyArray<L>
}

const spec = <L extends string>(name: string, help: string, labelNames: ReadonlyArray<L>): GaugeSpec<L> => ({ name, help, labelNames })

/** The scrape-time gauges; each appears once a part of the process that can answer it registers a probe. */
export const gauges = {
  newestEventAge: spec(
    "csp_newest_event_age_seconds",
    "Age of the newest stored event per kind and symbol (ticker: its timestamp; trade: its trade time; bar: its close), from the store",
    ["kind", "symbol"]
  ),
  consumerLag: spec(
    "csp_consumer_lag_messages",
    "Kafka messages of a partition not yet stored: the partition's high watermark at the last fetch minus the first offset not yet acknowledged",
    ["topic", "partition"]
  ),
  queueDepth: spec(
    "csp_queue_depth_events",
    "Events waiting for the consumer: in the in-process queue (direct mode) or fetched from Kafka and not yet taken",
    ["kind"]
  ),
  binanceUsedWeight: spec("csp_binance_used_weight_1m", "Binance's request weight used in the current minute (x-mbx-used-weight-1m, last answer)", []),
  binanceRateLimited: spec("csp_binance_rate_limited", "1 while no request may leave for Binance (a Retry-After or the weight guard), else 0", []),
  binanceRateLimitWait: spec("csp_binance_rate_limit_wait_seconds", "Seconds until requests to Binance may leave again; 0 when they may", []),
  streamConnected: spec("csp_stream_connected", "1 while the WebSocket connection carries data, else 0", ["connection"]),
  streamConnectionAge: spec("csp_stream_connection_age_seconds", "Seconds since the current WebSocket connection opened (0 while not connected)", [
    "connection"
  ]),
  streamLastMessageAge: spec("csp_stream_last_message_age_seconds", "Seconds since the connection's last data message", ["connection"]),
  tradeGapIds: spec("csp_trade_gap_ids", "Trade ids in recorded gaps by state (missing, repaired, unrepairable), from trade_gaps", ["symbol", "state"])
} as const

/** A probe that cannot answer within this long (a locked database) is left out of that scrape. */
const PROBE_DEADLINE = Duration.seconds(1)

const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const BATCH_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000]

export class Metrics extends Effect.Service<Metrics>()("status/Metrics", {
  effect: Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const registers = [registry]

    const events = (stage: EventStage, help: string) =>
      new Counter<EventLabel>({ name: `csp_events_${stage}_total`, help, labelNames: ["kind", "source", "symbol"], registers })
    const eventCounters: Record<EventStage, Counter<EventLabel>> = {
      published: events("published", "Events the producer handed to the broker"),
      received: events("received", "Events the consumer took from the broker (redeliveries included)"),
      stored: events("stored", "Events newly stored in SQLite (a replay of a stored event is not counted; bars: every kline written)"),
      dead_lettered: events("dead_lettered", "Kafka messages moved to <topic>.dlq (source unknown: they did not decode; symbol from the key when configured)")
    }

    const tallies: Record<EventStage, Map<EventLabels<unknown>, EventTally<unknown>>> = {
      published: new Map(),
      received: new Map(),
      stored: new Map(),
      dead_lettered: new Map()
    }

    const sqliteBatchSize = new Histogram<"kind">({
      name: "csp_sqlite_batch_size_events",
      help: "Events per SQLite write transaction of the consumer",
      labelNames: ["kind"],
      buckets: BATCH_BUCKETS,
      registers
    })
    const sqliteBatchDuration = new Histogram<"kind">({
      name: "csp_sqlite_batch_duration_seconds",
      help: "Duration of one SQLite write transaction of the consumer",
      labelNames: ["kind"],
      buckets: SECONDS_BUCKETS,
      registers
    })
    const tradeGapsFound = new Counter<"symbol">({
      name: "csp_trade_gaps_found_total",
      help: "Ranges of missing trade ids recorded by this process",
      labelNames: ["symbol"],
      registers
    })
    const tradeGapIds = new Counter<"symbol" | "outcome">({
      name: "csp_trade_gap_ids_total",
      help: "Trade ids found missing (outcome=found), then repaired or recorded unrepairable, by this process",
      labelNames: ["symbol", "outcome"],
      registers
    })
    const streamReconnects = new Counter<"connection">({
      name: "csp_stream_reconnects_total",
      help: "WebSocket connections lost or dropped as stale and replaced",
      labelNames: ["connection"],
      registers
    })
    const streamDropped = new Counter({
      name: "csp_stream_events_dropped_total",
      help: "Stream trades and bars dropped because the broker did not take them fast enough (repaired from REST later)",
      registers
    })
    const binanceRequests = new Counter<"endpoint" | "status">({
      name: "csp_binance_requests_total",
      help: "Requests to Binance's REST API by path and HTTP status (\"error\": no answer)",
      labelNames: ["endpoint", "status"],
      registers
    })
    const httpRequests = new Counter<"method" | "route" | "status">({
      name: "csp_http_requests_total",
      help: "HTTP requests answered, by method, route template and status",
      labelNames: ["method", "route", "status"],
      registers
    })
    const httpDuration = new Histogram<"method" | "route" | "status">({
      name: "csp_http_request_duration_seconds",
      help: "Time from a request's arrival to its response head, by method, route template and status",
      labelNames: ["method", "route", "status"],
      buckets: SECONDS_BUCKETS,
      registers
    })

    /** The probes of each scrape-time gauge, by name; the gauge is made when its first probe arrives. */
    const probes = new Map<string, Set<Probe<string>>>()
    const runProbe = (name: string) => (probe: Probe<string>) =>
      Runtime.runPromise(runtime)(
        probe.pipe(
          Effect.timeoutFail({ duration: PROBE_DEADLINE, onTimeout: () => new Error(`no answer within ${Duration.format(PROBE_DEADLINE)}`) }),
          Effect.catchAllCause((cause) => Effect.as(Effect.logDebug(`metrics: a probe of ${name} failed; left out of this scrape`, cause), []))
        )
      )
    const gaugeFor = (g: GaugeSpec<string>) => {
      const existing = probes.get(g.name)
      if (existing !== undefined) return existing
      const set = new Set<Probe<string>>()
      probes.set(g.name, set)
      new Gauge<string>({
        name: g.name,
        help: g.help,
        labelNames: g.labelNames,
        registers,
        async collect() {
          // all samples first, then reset and set in one synchronous step: a concurrent scrape never sees half
          const results = await Promise.all([...set].map(runProbe(g.name)))
          this.reset()
          // reset() gives a gauge without labels a 0: absent is the truth when no probe answered
          if (g.labelNames.length === 0 && results.every((r) => r.length === 0)) this.remove({})
          for (const samples of results) for (const s of samples) this.set(s.labels, s.value)
        }
      })
      return set
    }

    return {
      registry,
      /** The exposition in Prometheus text format, and its content type. */
      exposition: Effect.map(
        Effect.promise(() => registry.metrics()),
        (text) => ({ text, contentType: registry.contentType })
      ),
      /**
       * The tally of `stage` for one kind of event, one per (stage, labels) in the process: its add-to-
       * commit runs within one synchronous step, so callers on several fibers can share it.
       */
      tally: <A>(stage: EventStage, labels: EventLabels<A>): EventTally<A> => {
        const key = labels as EventLabels<unknown>
        const known = tallies[stage].get(key)
        if (known !== undefined) return known as EventTally<A>
        const made = makeTally(eventCounters[stage], labels)
        tallies[stage].set(key, made as EventTally<unknown>)
        return made
      },
      /** Records one SQLite write transaction of `kind`: label objects made once per writer. */
      sqliteBatch: (kind: EventKind) => {
        const labels = { kind }
        return (events: number, seconds: number) => {
          sqliteBatchSize.observe(labels, events)
          sqliteBatchDuration.observe(labels, seconds)
        }
      },
      /** Trade ids newly recorded missing (`ranges` of them), or settled. */
      tradeGaps: (symbol: string, outcome: "found" | "repaired" | "unrepairable", ids: number, ranges = 0) => {
        if (ranges > 0) tradeGapsFound.inc({ symbol }, ranges)
        if (ids > 0) tradeGapIds.inc({ symbol, outcome }, ids)
      },
      streamReconnect: (connection: string) => streamReconnects.inc({ connection }),
      streamDropped: (events: number) => streamDropped.inc(events),
      binanceRequests,
      httpRequests,
      httpDuration,
      /**
       * Adds a probe to a scrape-time gauge for as long as the scope lasts. It runs at each scrape,
       * with a deadline; a failing or slow probe is left out of that scrape only.
       */
      probe: <L extends string>(gauge: GaugeSpec<L>, probe: Probe<L>): Effect.Effect<void, never, Scope.Scope> => {
        const p = probe as Probe<string>
        return Effect.acquireRelease(
          Effect.sync(() => gaugeFor(gauge as GaugeSpec<string>).add(p)),
          (set) => Effect.sync(() => set.delete(p))
        )
      }
    } as const
  })
}) {}

/** Shows a channel's `pending` as the queue depth of `kind` for the scope's life, when the process has Metrics. */
export const probeQueueDepth = (kind: EventKind, pending: Effect.Effect<number>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Effect.serviceOption(Metrics), (metrics) =>
    Option.isNone(metrics) ? Effect.void : metrics.value.probe(gauges.queueDepth, Effect.map(pending, (n) => [{ labels: { kind }, value: n }]))
  )
