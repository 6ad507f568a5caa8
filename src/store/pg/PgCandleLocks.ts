import type { SqlClient, SqlError } from "@effect/sql"
import { Effect } from "effect"

/**
 * The first key of the advisory locks on a symbol's ticks and candles: any fixed number. The
 * two-key form keeps these apart from the one-key migration lock (PgSql.ts).
 */
const SYMBOL_LOCKS = 7_341_210

const LOCK_SYMBOLS = `
  SELECT pg_advisory_xact_lock(${SYMBOL_LOCKS}, k)
  FROM (SELECT DISTINCT hashtext(s) AS k FROM unnest($1::text[]) AS s) keys
  ORDER BY k`

/**
 * Takes the transaction-level lock of each symbol, held until COMMIT or ROLLBACK: the tick writers
 * and kline writers of every process read, merge and write a symbol's ticks, stats and candles one at
 * a time. In one statement, in ascending key order (PostgreSQL calls the lock after the sort), so two
 * writers never wait on each other in a circle. Run it first in the transaction.
 */
export const lockSymbols =
  (sql: SqlClient.SqlClient) =>
  (symbols: ReadonlyArray<string>): Effect.Effect<void, SqlError.SqlError> =>
    symbols.length === 0 ? Effect.void : Effect.asVoid(sql.unsafe(LOCK_SYMBOLS, [symbols]))
