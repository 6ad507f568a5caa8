import { SqlClient, type SqlError } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Option, Schema } from "effect"
import { minuteCoverageWith, type TradeCsvRow, TradeGap, type TradeKey, TradeRepo, type TradeScan, type TradesJson } from "../TradeRepo.js"
import { pgJsonArray, pgTradeJson } from "./PgTradeJson.js"

const JsonPage = Schema.Tuple(Schema.Struct({ json: Schema.String, rows: Schema.Number }))
const RangePage = Schema.Tuple(
  Schema.Struct({ json: Schema.String, rows: Schema.Number, us: Schema.NullOr(Schema.Number), id: Schema.NullOr(Schema.Number), more: Schema.Boolean })
)
const ScanRow = Schema.Tuple(
  Schema.Struct({
    count: Schema.Number,
    first_id: Schema.NullOr(Schema.Number),
    last_id: Schema.NullOr(Schema.Number),
    holes: Schema.Array(Schema.Tuple(Schema.Number, Schema.Number))
  })
)
const Gaps = Schema.Array(TradeGap)

/** Runs `statement` and decodes its rows; rows that do not decode are a defect (the schema is ours). */
const decoded =
  <A, I>(schema: Schema.Schema<A, I>) =>
  <E, R>(statement: Effect.Effect<ReadonlyArray<object>, E, R>): Effect.Effect<A, E, R> =>
    statement.pipe(Effect.flatMap(Schema.decodeUnknown(schema)), Effect.catchTag("ParseError", Effect.die)) as Effect.Effect<A, E, R>

/** The first row's [id, time µs] as a key, if any. */
const firstKey = (rows: ReadonlyArray<ReadonlyArray<unknown>>): Option.Option<TradeKey> =>
  rows.length === 0 ? Option.none() : Option.some({ id: rows[0]![0] as number, timeMicros: rows[0]![1] as number })

const TRADE_JSON = pgTradeJson("t")
/** Rows after the key (t, id) and before `end`, as in the SQLite reads: the first page starts after (start, -1). */
const AFTER = "symbol = $1 AND (trade_time_us, agg_trade_id) > ($2, $3) AND trade_time_us < $4"

/**
 * The PostgreSQL adapter of TradeRepo, on the store's pool: the same reads with the same answers
 * (the JSON is built by PostgreSQL, byte for byte SQLite's). Each read is one statement, so it sees
 * one snapshot: a range page, its last key and whether more follow cannot disagree. PostgreSQL does
 * the passes over a day (scan) itself, so none holds the event loop.
 */
export const PgTradeRepoLive: Layer.Layer<TradeRepo, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TradeRepo,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const latestText = `
      SELECT ${pgJsonArray(TRADE_JSON, "t.agg_trade_id DESC")} AS json, count(*) AS rows
      FROM (SELECT * FROM trades WHERE symbol = $1 ORDER BY agg_trade_id DESC LIMIT $2) t`
    // the page, its last key and whether more follow, in one statement (one snapshot): one row past
    // the page says whether more follow (a correlated EXISTS after the last key would not use the index)
    const rangeText = `
      WITH ahead AS (SELECT * FROM trades WHERE ${AFTER} ORDER BY trade_time_us, agg_trade_id LIMIT $5 + 1),
      page AS (SELECT *, row_number() OVER (ORDER BY trade_time_us, agg_trade_id) AS n FROM ahead)
      SELECT (SELECT ${pgJsonArray(TRADE_JSON, "t.n")} FROM page t WHERE t.n <= $5) AS json,
        (SELECT count(*) FROM page WHERE n <= $5) AS rows,
        (SELECT trade_time_us FROM page WHERE n = $5) AS us, (SELECT agg_trade_id FROM page WHERE n = $5) AS id,
        EXISTS (SELECT 1 FROM page WHERE n > $5) AS more`
    // in (time, id) order, each id against the highest before it (or `previousId`): a jump is a hole
    const scanText = `
      WITH s AS (
        SELECT agg_trade_id AS id, trade_time_us AS us,
          greatest(max(agg_trade_id) OVER (ORDER BY trade_time_us, agg_trade_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), $4::bigint) AS prev
        FROM trades WHERE symbol = $1 AND trade_time_us >= $2 AND trade_time_us < $3)
      SELECT count(*) AS count, min(id) AS first_id, max(id) AS last_id,
        coalesce(json_agg(json_build_array(prev + 1, id - 1) ORDER BY us, id) FILTER (WHERE id > prev + 1), '[]') AS holes
      FROM s`
    const csvText = `
      SELECT agg_trade_id, trade_time_us, symbol, price, quantity, first_trade_id, last_trade_id, is_buyer_maker
      FROM trades WHERE symbol = $1 AND agg_trade_id > $2 AND agg_trade_id <= $3 AND trade_time_us >= $4 AND trade_time_us < $5
      ORDER BY agg_trade_id LIMIT $6`
    const firstText = "SELECT agg_trade_id, trade_time_us FROM trades WHERE symbol = $1 ORDER BY agg_trade_id LIMIT 1"
    const lastBeforeText = `
      SELECT agg_trade_id, trade_time_us FROM trades WHERE symbol = $1 AND trade_time_us < $2
      ORDER BY trade_time_us DESC, agg_trade_id DESC LIMIT 1`
    const gapsText = `
      SELECT from_id, to_id, state, reason, detected_at, resolved_at FROM trade_gaps WHERE symbol = $1 AND to_id > $2 ORDER BY from_id`
    const pendingText = `
      SELECT EXISTS (SELECT 1 FROM trade_gaps WHERE symbol = $1 AND state = 'missing' AND from_id <= $2 AND to_id >= $3)`
    const minutesText = `
      SELECT open_time FROM candles WHERE symbol = $1 AND interval = '1m' AND source = 'klines' AND closed = 1
      AND open_time >= $2 AND open_time < $3 ORDER BY open_time`
    // distinct symbols by hopping through the primary key, one lookup per symbol instead of a scan
    const symbolsText = `
      WITH RECURSIVE s(symbol) AS (
        SELECT min(symbol) FROM trades
        UNION ALL SELECT (SELECT min(symbol) FROM trades WHERE symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL
      ) SELECT symbol FROM s WHERE symbol IS NOT NULL`

    // the statements' text is fixed: built once, sent with their parameters
    const rows = (text: string, ...params: ReadonlyArray<unknown>) => sql.unsafe(text, params)
    const values = (text: string, ...params: ReadonlyArray<unknown>) => sql.unsafe(text, params).values

    const minuteCoverage = minuteCoverageWith((symbol, fromMs, toMs) =>
      Effect.map(values(minutesText, symbol, fromMs, toMs), (opens) => opens.map((r) => r[0] as number))
    )

    return TradeRepo.make({
      latestJson: (symbol: string, limit: number): Effect.Effect<TradesJson, SqlError.SqlError> =>
        Effect.map(decoded(JsonPage)(rows(latestText, symbol, limit)), ([page]) => ({ ...page, last: null, more: false })),
      rangeJson: (symbol: string, startUs: number, endUs: number, limit: number, cursor?: TradeKey) => {
        const from = cursor === undefined || cursor.timeMicros < startUs ? { timeMicros: startUs, id: -1 } : cursor
        return Effect.map(
          decoded(RangePage)(rows(rangeText, symbol, from.timeMicros, from.id, endUs, limit)),
          ([{ id, json, more, rows, us }]): TradesJson =>
            rows < limit || us === null || id === null ? { json, rows, last: null, more: false } : { json, rows, last: { timeMicros: us, id }, more }
        )
      },
      scan: (symbol: string, fromUs: number, toUs: number, previousId: number | null): Effect.Effect<TradeScan, SqlError.SqlError> =>
        Effect.map(decoded(ScanRow)(rows(scanText, symbol, fromUs, toUs, previousId)), ([r]) => ({
          count: r.count,
          firstId: r.first_id,
          lastId: r.last_id,
          holes: r.holes.map(([fromId, toId]) => ({ fromId, toId }))
        })),
      csvRows: (symbol: string, fromUs: number, toUs: number, afterId: number, maxId: number, limit: number) =>
        values(csvText, symbol, afterId, maxId, fromUs, toUs, limit) as unknown as Effect.Effect<ReadonlyArray<TradeCsvRow>, SqlError.SqlError>,
      firstTrade: (symbol: string) => Effect.map(values(firstText, symbol), firstKey),
      lastTradeBefore: (symbol: string, beforeUs: number) => Effect.map(values(lastBeforeText, symbol, beforeUs), firstKey),
      gaps: (symbol: string, aboveId: number | null) => decoded(Gaps)(rows(gapsText, symbol, aboveId ?? -1)),
      pendingGap: (symbol: string, fromId: number, toId: number) =>
        Effect.map(values(pendingText, symbol, toId, fromId), (r) => r[0]?.[0] === true),
      minuteCoverage,
      missingMinutes: (symbol: string, fromMs: number, toMs: number) => Effect.map(minuteCoverage(symbol, fromMs, toMs), (c) => c.missing),
      symbols: Effect.map(values(symbolsText), (r): ReadonlyArray<string> => r.map((x) => x[0] as string))
    })
  })
)
