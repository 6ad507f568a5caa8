import { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Schema } from "effect"
import { type EventsJson, JsonPage, TickRepo, tickQueries } from "../TickRepo.js"

/**
 * The contract event of the `ticks` row `t` as JSON text, built by PostgreSQL as SQLite builds it
 * (TickRepo.EVENT_JSON): compact, the fields in contract order, `event_time` only when stored.
 * `row_to_json` keeps the subselect's column order and adds no spaces (json_build_object would);
 * every other column is NOT NULL, so stripping nulls drops only a missing `event_time`.
 */
export const PG_EVENT_JSON = `(SELECT json_strip_nulls(row_to_json(e))::text FROM (SELECT t.timestamp_utc, t.symbol,
  t.last_price AS "lastPrice", t.price_change_percent AS "priceChangePercent", t.volume, t.source, t.event_time) e)`

/** One page of events as a JSON array (`[]` when empty), with its count and the last one's instant. */
const page = (order: "ASC" | "DESC", last: "min" | "max", where: string, limit: string) => `
  SELECT COALESCE('[' || string_agg(j, ',' ORDER BY ts_us ${order}) || ']', '[]') AS json, count(*) AS rows, ${last}(ts_us) AS last_us
  FROM (SELECT t.ts_us, ${PG_EVENT_JSON} AS j FROM ticks t WHERE ${where} ORDER BY t.ts_us ${order} LIMIT ${limit}) p`

const LATEST = page("DESC", "min", "t.symbol = $1", "$2")
const RANGE = page("ASC", "max", "t.symbol = $1 AND t.ts_us >= $2 AND t.ts_us < $3", "$4")
const MORE = "SELECT EXISTS (SELECT 1 FROM ticks WHERE symbol = $1 AND ts_us > $2 AND ts_us < $3) AS more"

const decodePage = Schema.decodeUnknown(Schema.Tuple(JsonPage))
const decodeMore = Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ more: Schema.Boolean })))
const decodeVersion = Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ version: Schema.String })))

/**
 * The store's data version on PostgreSQL (TickRepo's and the live feed's): the current snapshot
 * (`xmin:xmax:running ids`), which changes whenever a transaction that writes has begun (taken an
 * id) or ended since the last call, in any session. Reads take no id.
 */
export const pgDataVersion = (sql: SqlClient.SqlClient) =>
  Effect.flatMap(sql.unsafe("SELECT pg_current_snapshot()::text AS version"), (rows) =>
    Effect.orDie(Effect.map(decodeVersion(rows), ([row]) => row.version))
  )

/**
 * TickRepo on PostgreSQL: the same reads; the JSON pages are built by the server, byte for byte what
 * the SQLite store sends. Symbols are listed in byte order (`COLLATE "C"`), as SQLite sorts them,
 * whatever the database's collation.
 */
export const PgTickRepoLive: Layer.Layer<TickRepo, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TickRepo,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const queries = tickQueries(sql, `symbol COLLATE "C"`)
    const one = <A>(decode: (u: unknown) => Effect.Effect<readonly [A], unknown>, text: string, params: ReadonlyArray<unknown>) =>
      Effect.flatMap(sql.unsafe(text, params), (rows) => Effect.orDie(Effect.map(decode(rows), ([row]) => row)))
    const pageOf = (text: string, params: ReadonlyArray<unknown>) =>
      Effect.map(one(decodePage, text, params), ({ json, last_us, rows }): EventsJson => ({ json, rows, lastMicros: last_us, more: false }))

    return TickRepo.make({
      latest: queries.latest,
      range: queries.range,
      latestJson: (symbol, limit) => pageOf(LATEST, [symbol, limit]),
      rangeJson: (symbol, startUs, endUs, limit) =>
        Effect.flatMap(pageOf(RANGE, [symbol, startUs, endUs, limit]), (answer) =>
          answer.rows < limit || answer.lastMicros === null
            ? Effect.succeed(answer)
            : Effect.map(one(decodeMore, MORE, [symbol, answer.lastMicros, endUs]), ({ more }) => ({ ...answer, more }))
        ),
      dataVersion: pgDataVersion(sql),
      symbols: queries.symbols,
      newestMicros: queries.newestMicros
    })
  })
)
