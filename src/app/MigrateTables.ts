import { Schema } from "effect"

// What `migrate-store` copies, table by table, and the statements it copies them with. The columns
// are those the SQLite store ends with after its migrations 0001–0004, each with the type its
// PostgreSQL twin has (store/pg/migrations/0001_schema.ts): the arrays sent to `unnest` are cast to it.

type PgType = "text" | "int8" | "int4" | "int2" | "float8"

interface Column {
  readonly name: string
  readonly pg: PgType
  readonly nullable?: true
}

export interface TableSpec {
  readonly name: string
  /** The SQLite primary key: rows are read in this order, and the last one copied is the resume point. */
  readonly key: ReadonlyArray<string>
  readonly columns: ReadonlyArray<Column>
  /**
   * `insert`: an identity table (ticks, trades), a stored row never changes, so a row already there
   * is kept. `upsert`: a derived table, rebuilt by the platform as data arrives, so the source's row wins.
   */
  readonly mode: "insert" | "upsert"
}

const text = (name: string): Column => ({ name, pg: "text" })
const int8 = (name: string): Column => ({ name, pg: "int8" })
const nullable = (column: Column): Column => ({ ...column, nullable: true })

const spans = [
  nullable(int8("first_us")),
  nullable(int8("last_us")),
  nullable({ name: "high_num", pg: "float8" }),
  nullable(int8("high_us")),
  nullable({ name: "low_num", pg: "float8" }),
  nullable(int8("low_us"))
]
const ohlcv = ["open", "high", "low", "close", "volume", "quote_volume"].map(text)

/** In copy order: each identity table before the tables derived from it. */
export const TABLES: ReadonlyArray<TableSpec> = [
  {
    name: "ticks",
    key: ["symbol", "ts_us"],
    mode: "insert",
    columns: [
      text("symbol"),
      int8("ts_us"),
      text("timestamp_utc"),
      text("last_price"),
      text("price_change_percent"),
      text("volume"),
      text("source"),
      nullable(text("event_time")),
      text("ingested_at")
    ]
  },
  {
    name: "symbol_stats",
    key: ["symbol"],
    mode: "upsert",
    columns: [text("symbol"), int8("latest_us"), text("latest_timestamp_utc"), int8("events")]
  },
  {
    name: "candles",
    key: ["symbol", "interval", "source", "open_time"],
    mode: "upsert",
    columns: [
      text("symbol"),
      text("interval"),
      text("source"),
      int8("open_time"),
      ...ohlcv,
      int8("trades"),
      { name: "closed", pg: "int2" },
      ...spans
    ]
  },
  {
    name: "daily_candles",
    key: ["symbol", "date"],
    mode: "upsert",
    columns: [
      text("symbol"),
      text("date"),
      ...ohlcv,
      int8("trades"),
      { name: "closed", pg: "int2" },
      text("source"),
      nullable(text("basis")),
      ...spans,
      nullable({ name: "open_minutes", pg: "int4" })
    ]
  },
  {
    name: "trades",
    key: ["symbol", "agg_trade_id"],
    mode: "insert",
    columns: [
      text("symbol"),
      int8("agg_trade_id"),
      text("price"),
      text("quantity"),
      int8("first_trade_id"),
      int8("last_trade_id"),
      int8("trade_time_us"),
      { name: "is_buyer_maker", pg: "int2" },
      text("source")
    ]
  },
  {
    name: "trade_gaps",
    key: ["symbol", "from_id"],
    mode: "upsert",
    columns: [
      text("symbol"),
      int8("from_id"),
      int8("to_id"),
      text("state"),
      nullable(text("reason")),
      text("detected_at"),
      nullable(text("resolved_at"))
    ]
  }
]

const quote = (name: string) => `"${name}"`
const list = (names: ReadonlyArray<string>, prefix = "") => names.map((n) => `${prefix}${quote(n)}`).join(", ")

export type KeyValue = string | number
export type Row = Readonly<Record<string, string | number | null>>

/**
 * A row as SQLite must hold it: a value of another type (SQLite keeps whatever it is given) stops the
 * copy with the table and the column, before PostgreSQL would refuse the whole chunk less clearly.
 */
export const rowSchema = (table: TableSpec): Schema.Schema<Row> => {
  const value = (c: Column): Schema.Schema.Any => (c.pg === "text" ? Schema.String : c.pg === "float8" ? Schema.Number : Schema.Int)
  const fields = Object.fromEntries(table.columns.map((c) => [c.name, c.nullable === true ? Schema.NullOr(value(c)) : value(c)]))
  return Schema.Struct(fields) as unknown as Schema.Schema<Row>
}

/** The next chunk of `table` in key order after `after` (the first one without it); `?` placeholders. */
export const sqliteChunk = (table: TableSpec, after: ReadonlyArray<KeyValue> | null, limit: number) => {
  const select = `SELECT ${list(table.columns.map((c) => c.name))} FROM ${quote(table.name)}`
  const order = `ORDER BY ${list(table.key)} LIMIT ?`
  // A row value comparison: the primary key's index serves it, so each chunk costs its own rows only.
  return after === null
    ? { sql: `${select} ${order}`, params: [limit] }
    : { sql: `${select} WHERE (${list(table.key)}) > (${table.key.map(() => "?").join(", ")}) ${order}`, params: [...after, limit] }
}

/** The key of `row`, as the progress table keeps it. */
export const keyOf = (table: TableSpec, row: Row): Array<KeyValue> => table.key.map((k) => row[k] as KeyValue)

/**
 * One multi-row INSERT of a chunk as one array per column (`unnest`), whatever the chunk's size, that
 * returns how many rows it added or changed. Identity tables keep a row already there; derived tables
 * take the source's row, but a row equal to the stored one is not counted (nor rewritten), so a run
 * over data already copied reports 0.
 */
export const pgInsert = (table: TableSpec, rows: ReadonlyArray<Row>) => {
  const names = table.columns.map((c) => c.name)
  const arrays = table.columns.map((c) => `$${table.columns.indexOf(c) + 1}::${c.pg}[]`).join(", ")
  const others = names.filter((n) => !table.key.includes(n))
  const conflict =
    table.mode === "insert"
      ? "ON CONFLICT DO NOTHING"
      : `ON CONFLICT (${list(table.key)}) DO UPDATE SET ${others.map((n) => `${quote(n)} = EXCLUDED.${quote(n)}`).join(", ")}
         WHERE (${list(others, `${quote(table.name)}.`)}) IS DISTINCT FROM (${list(others, "EXCLUDED.")})`
  return {
    sql: `WITH written AS (
            INSERT INTO ${quote(table.name)} (${list(names)}) SELECT * FROM unnest(${arrays})
            ${conflict}
            RETURNING 1)
          SELECT count(*)::int AS written FROM written`,
    params: names.map((n) => rows.map((r) => r[n] ?? null))
  }
}
