import { SqlClient } from "@effect/sql"
import { Clock, Effect, Layer, Option, Schema } from "effect"
import * as AppConfig from "../Config.js"
import { MINUTE_MS } from "../domain/Time.js"
import { Health, type StreamConnectionHealth } from "./Health.js"
import { gauges, Metrics, type Sample } from "./Metrics.js"

/**
 * The scrape-time gauges of what /health knows (stream connections) and of the store (the newest
 * event per kind and symbol, the trade gaps by state), each part only where the process has it: the
 * producer has no store, the api role no stream.
 */

const NewestRow = Schema.Struct({
  symbol: Schema.String,
  ticker_us: Schema.NullOr(Schema.Number),
  trade_us: Schema.NullOr(Schema.Number),
  bar_open_ms: Schema.NullOr(Schema.Number)
})
const GapRow = Schema.Struct({ symbol: Schema.String, state: Schema.String, ids: Schema.Number })

const GAP_STATES = ["missing", "repaired", "unrepairable"] as const

const round = (seconds: number) => Math.max(0, Math.round(seconds * 1000) / 1000)

/** The configured symbols as a one-column row set named `symbol`, in the store's own dialect. */
const configured = (sql: SqlClient.SqlClient, symbols: ReadonlyArray<string>) =>
  sql.onDialectOrElse({
    pg: () => sql`unnest(${`{${symbols.join(",")}}`}::text[]) AS symbol`,
    orElse: () => sql`value AS symbol FROM json_each(${JSON.stringify(symbols)})`
  })

/** Per symbol (configured, or with ticks), one indexed MAX per table: a few microseconds each. */
const newestEvents = (sql: SqlClient.SqlClient, symbols: ReadonlyArray<string>) =>
  sql`
    SELECT s.symbol AS symbol,
      (SELECT latest_us FROM symbol_stats WHERE symbol = s.symbol) AS ticker_us,
      (SELECT MAX(trade_time_us) FROM trades WHERE symbol = s.symbol) AS trade_us,
      (SELECT MAX(open_time) FROM candles WHERE symbol = s.symbol AND interval = '1m' AND source = 'klines') AS bar_open_ms
    FROM (SELECT ${configured(sql, symbols)} UNION SELECT symbol FROM symbol_stats) s`.pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(NewestRow)))
  )

const storeProbes = (metrics: Metrics, sql: SqlClient.SqlClient, symbols: ReadonlyArray<string>) =>
  Effect.all(
    [
      metrics.probe(
        gauges.newestEventAge,
        Effect.gen(function* () {
          const rows = yield* newestEvents(sql, symbols)
          const nowMs = yield* Clock.currentTimeMillis
          const samples: Array<Sample<"kind" | "symbol">> = []
          for (const { bar_open_ms, symbol, ticker_us, trade_us } of rows) {
            if (ticker_us !== null) samples.push({ labels: { kind: "ticker", symbol }, value: round((nowMs * 1000 - ticker_us) / 1e6) })
            if (trade_us !== null) samples.push({ labels: { kind: "trade", symbol }, value: round((nowMs * 1000 - trade_us) / 1e6) })
            // a bar is as new as its close
            if (bar_open_ms !== null) samples.push({ labels: { kind: "bar", symbol }, value: round((nowMs - bar_open_ms - MINUTE_MS) / 1000) })
          }
          return samples
        })
      ),
      metrics.probe(
        gauges.tradeGapIds,
        sql`SELECT symbol, state, CAST(SUM(to_id - from_id + 1) AS BIGINT) AS ids FROM trade_gaps GROUP BY symbol, state`.pipe(
          Effect.flatMap(Schema.decodeUnknown(Schema.Array(GapRow))),
          Effect.map((rows) => {
            // every state of a symbol with gaps, 0 included, so a panel's series does not vanish once repaired
            const bySymbol = new Map<string, Map<string, number>>()
            for (const row of rows) {
              const states = bySymbol.get(row.symbol) ?? new Map<string, number>()
              states.set(row.state, row.ids)
              bySymbol.set(row.symbol, states)
            }
            return [...bySymbol].flatMap(([symbol, states]) =>
              GAP_STATES.map((state) => ({ labels: { symbol, state }, value: states.get(state) ?? 0 }))
            )
          })
        )
      )
    ],
    { discard: true }
  )

const streamProbes = (metrics: Metrics, health: Health) => {
  /** The connections with the current time; each gauge reads them at its own collect. */
  const connections = Effect.zip(health.streamConnections, Clock.currentTimeMillis)
  const perConnection = (value: (c: StreamConnectionHealth, now: number) => number | undefined) =>
    Effect.map(connections, ([all, now]) =>
      all.flatMap((c) => {
        const v = value(c, now)
        return v === undefined ? [] : [{ labels: { connection: c.name }, value: v }]
      })
    )
  return Effect.all(
    [
      metrics.probe(gauges.streamConnected, perConnection((c) => (c.state === "connected" ? 1 : 0))),
      metrics.probe(
        gauges.streamConnectionAge,
        perConnection((c, now) => (c.connected_since === null ? 0 : round((now - Date.parse(c.connected_since)) / 1000)))
      ),
      metrics.probe(
        gauges.streamLastMessageAge,
        perConnection((c, now) => (c.last_message_at_ms > 0 ? round((now - c.last_message_at_ms) / 1000) : undefined))
      )
    ],
    { discard: true }
  )
}

/** Registers the probes for the process's lifetime; provided by app/Roles.ts above everything it reads. */
export const StatusProbesLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const metrics = yield* Effect.serviceOption(Metrics)
    if (Option.isNone(metrics)) return
    const health = yield* Effect.serviceOption(Health)
    if (Option.isSome(health)) yield* streamProbes(metrics.value, health.value)
    const sql = yield* Effect.serviceOption(SqlClient.SqlClient)
    if (Option.isSome(sql)) {
      const symbols = yield* Effect.orElseSucceed(AppConfig.symbols, () => [])
      yield* storeProbes(metrics.value, sql.value, symbols)
    }
  })
)
