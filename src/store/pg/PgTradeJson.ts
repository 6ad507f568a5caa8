/**
 * The contract JSON of the `trades` row aliased `t`, built by PostgreSQL: byte for byte what
 * TRADE_JSON builds in SQLite and `domain/Trade.tradeJson` writes. `row_to_json` writes compact JSON
 * with the columns' names in their order (`json_build_object` would put spaces around the colons);
 * the instant is exact (integer microseconds on a timestamp without time zone).
 */
export const pgTradeJson = (t: string): string =>
  `row_to_json((SELECT j FROM (SELECT ${t}.symbol, ${t}.agg_trade_id, ${t}.price, ${t}.quantity, ` +
  `${t}.first_trade_id, ${t}.last_trade_id, ` +
  `to_char(timestamp 'epoch' + ${t}.trade_time_us * interval '1 microsecond', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS trade_time, ` +
  `${t}.is_buyer_maker <> 0 AS is_buyer_maker, ${t}.source) j))::text`

/** A JSON array of the rows' `json` texts in `order`: `[]` for none (`json_agg` would add newlines). */
export const pgJsonArray = (json: string, order: string): string => `coalesce('[' || string_agg(${json}, ',' ORDER BY ${order}) || ']', '[]')`
