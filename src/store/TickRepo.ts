import { SqlClient, SqlError, SqlSchema } from "@effect/sql"
import { Array as Arr, Effect, Schema } from "effect"
import { SymbolSummary } from "../domain/ReadModels.js"
import type { TickerEvent } from "../domain/Ticker.js"
import { readerConnection } from "./RawSqlite.js"

/** A `ticks` row: every column was checked against the contract when it was written (TickWriter). */
const TickRow = Schema.Struct({
  symbol: Schema.String,
  timestamp_utc: Schema.String,
  last_price: Schema.String,
  price_change_percent: Schema.String,
  volume: Schema.String,
  source: Schema.String,
  event_time: Schema.NullOr(Schema.String)
})
type TickRow = typeof TickRow.Type

const toEvent = (row: TickRow): TickerEvent => {
  const event = {
    timestamp_utc: row.timestamp_utc,
    symbol: row.symbol,
    lastPrice: row.last_price,
    priceChangePercent: row.price_change_percent,
    volume: row.volume,
    source: row.source
  } as TickerEvent
  return row.event_time === null ? event : { ...event, event_time: row.event_time }
}

/**
 * The contract event of a `ticks` row as one JSON object, built by SQLite: the fields in contract
 * order, `event_time` only when stored (what `JSON.stringify` gives for the event `toEvent` builds).
 */
const contractFields =
  "'timestamp_utc', timestamp_utc, 'symbol', symbol, 'lastPrice', last_price, " +
  "'priceChangePercent', price_change_percent, 'volume', volume, 'source', source"
export const EVENT_JSON = `CASE WHEN event_time IS NULL THEN json_object(${contractFields}) ELSE json_object(${contractFields}, 'event_time', event_time) END`

/** An answer of the JSON reads: the events as one JSON array, how many, and the last one's instant (µs). */
export const JsonPage = Schema.Struct({ json: Schema.String, rows: Schema.Number, last_us: Schema.NullOr(Schema.Number) })
const decodePage = Schema.decodeUnknownSync(JsonPage)
const DataVersion = Schema.Struct({ data_version: Schema.Number })
const decodeVersion = Schema.decodeUnknownSync(DataVersion)

/**
 * The reads both stores run through @effect/sql, the same SQL on each (the JSON reads and the data
 * version are the store's own). `symbolOrder` is the ORDER BY of `symbols`.
 */
export const tickQueries = (sql: SqlClient.SqlClient, symbolOrder = "symbol") => {
  const findLatest = SqlSchema.findAll({
    Request: Schema.Struct({ symbol: Schema.String, limit: Schema.Number }),
    Result: TickRow,
    execute: ({ limit, symbol }) => sql`
      SELECT symbol, timestamp_utc, last_price, price_change_percent, volume, source, event_time
      FROM ticks WHERE symbol = ${symbol} ORDER BY ts_us DESC LIMIT ${limit}`
  })

  const findRange = SqlSchema.findAll({
    Request: Schema.Struct({ symbol: Schema.String, startUs: Schema.Number, endUs: Schema.Number, limit: Schema.Number }),
    Result: TickRow,
    execute: ({ endUs, limit, startUs, symbol }) => sql`
      SELECT symbol, timestamp_utc, last_price, price_change_percent, volume, source, event_time
      FROM ticks WHERE symbol = ${symbol} AND ts_us >= ${startUs} AND ts_us < ${endUs}
      ORDER BY ts_us ASC LIMIT ${limit}`
  })

  const findSymbols = SqlSchema.findAll({
    Request: Schema.Void,
    Result: SymbolSummary,
    execute: () => sql`SELECT symbol, latest_timestamp_utc, events FROM symbol_stats ORDER BY ${sql.literal(symbolOrder)}`
  })

  const findNewest = SqlSchema.findAll({
    Request: Schema.Void,
    Result: Schema.Struct({ newest: Schema.NullOr(Schema.Number) }),
    execute: () => sql`SELECT MAX(latest_us) AS newest FROM symbol_stats`
  })

  return {
    /** Newest first. */
    latest: (symbol: string, limit: number) => Effect.map(findLatest({ symbol, limit }), Arr.map(toEvent)),
    /** Oldest first, `start` inclusive, `end` exclusive (microseconds since the epoch). */
    range: (symbol: string, startUs: number, endUs: number, limit: number) =>
      Effect.map(findRange({ symbol, startUs, endUs, limit }), Arr.map(toEvent)),
    symbols: findSymbols(undefined),
    /** The newest stored event's instant (µs since the epoch), 0 when nothing is stored. */
    newestMicros: findNewest(undefined).pipe(Effect.map((rows) => rows[0]?.newest ?? 0))
  } as const
}

export interface EventsJson {
  /** The events as a JSON array, ready to send. */
  readonly json: string
  readonly rows: number
  /** The instant of the last event in the array, µs since the epoch; null when it is empty. */
  readonly lastMicros: number | null
  /** Whether more events follow in the range asked (range reads only). */
  readonly more: boolean
}

/**
 * Reads of the tick history (bronze layer), every one bounded; TickWriter writes it. Rows are read
 * without re-checking what the writer checked. The API's reads (`latestJson`, `rangeJson`,
 * `dataVersion`) run on a read connection of their own, straight on better-sqlite3 with statements
 * prepared once, and get their JSON from SQLite: no row becomes a JavaScript object on the way from
 * the table to the answer's bytes.
 */
export class TickRepo extends Effect.Service<TickRepo>()("store/TickRepo", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const reader = yield* readerConnection("the tick store for reading")

    const latestStatement = reader.prepare(`
      SELECT json_group_array(${EVENT_JSON} ORDER BY ts_us DESC) AS json, count(*) AS rows, min(ts_us) AS last_us
      FROM (SELECT * FROM ticks WHERE symbol = ? ORDER BY ts_us DESC LIMIT ?)`)
    const rangeStatement = reader.prepare(`
      SELECT json_group_array(${EVENT_JSON} ORDER BY ts_us) AS json, count(*) AS rows, max(ts_us) AS last_us
      FROM (SELECT * FROM ticks WHERE symbol = ? AND ts_us >= ? AND ts_us < ? ORDER BY ts_us LIMIT ?)`)
    const moreStatement = reader.prepare("SELECT EXISTS (SELECT 1 FROM ticks WHERE symbol = ? AND ts_us > ? AND ts_us < ?) AS more")
    const versionStatement = reader.prepare("PRAGMA data_version")

    /** One synchronous read on the reader; a failure (SQLITE_BUSY, a corrupt file) is a SqlError. */
    const read = <A>(what: string, f: () => A) =>
      Effect.try({ try: f, catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to read ${what}` }) })
    const page = (row: unknown, more: boolean): EventsJson => {
      const { json, last_us, rows } = decodePage(row)
      return { json, rows, lastMicros: last_us, more }
    }

    const queries = tickQueries(sql)
    /** See `dataVersion` below; a string on PostgreSQL (its snapshot). */
    const dataVersion: Effect.Effect<number | string, SqlError.SqlError> = read("the data version", () =>
      decodeVersion(versionStatement.get()).data_version
    )

    return {
      latest: queries.latest,
      range: queries.range,
      /** `latest` as one JSON array, newest first. */
      latestJson: (symbol: string, limit: number) =>
        read("the latest events", () => page(latestStatement.get(symbol, limit), false)),
      /** `range` as one JSON array, oldest first, and whether more events follow before `endUs`. */
      rangeJson: (symbol: string, startUs: number, endUs: number, limit: number) =>
        read("a range of events", () => {
          const answer = page(rangeStatement.get(symbol, startUs, endUs, limit), false)
          if (answer.rows < limit || answer.lastMicros === null) return answer
          return { ...answer, more: moreStatement.get(symbol, answer.lastMicros, endUs)?.["more"] === 1 }
        }),
      /**
       * A number that changes whenever any connection (this process's writers, another process) has
       * committed a change to the database since the last call: SQLite's `PRAGMA data_version` on the
       * read connection, which never writes. Meaningful only within this process's lifetime.
       */
      dataVersion,
      symbols: queries.symbols,
      newestMicros: queries.newestMicros
    } as const
  })
}) {}
