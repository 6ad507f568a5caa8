import { Chunk, Effect, Option, Stream } from "effect"
import { createHash } from "node:crypto"
import { formatInstantMicros } from "../domain/Ticker.js"
import { DAY_MS, utcDate } from "../domain/Time.js"
import type { TradeCsvRow, TradeRepo } from "../store/TradeRepo.js"

/** The trades CSV contract: column names and order never change. */
export const TRADES_CSV_HEADER = [
  "agg_trade_id",
  "trade_time",
  "symbol",
  "price",
  "quantity",
  "first_trade_id",
  "last_trade_id",
  "is_buyer_maker"
] as const

/** Rows read from the store per step of the stream: ~1 MB of CSV, a few milliseconds of work. */
export const TRADES_CSV_CHUNK_ROWS = 10_000

/** A closed day with nothing left to repair never changes: caches may keep it for a year. */
export const CLOSED_DAY_CACHE = "public, max-age=31536000, immutable"
/** Today, a future day, or a day still waiting for a repair: as the daily reports. */
export const OPEN_DAY_CACHE = "public, max-age=300"

/**
 * The shortest spelling of a contract decimal (`^-?\d+(\.\d+)?$`): `normalizeDecimal` without
 * BigDecimal, since a day's CSV writes millions of them. No trailing fractional zeros, no leading
 * zeros, no "-0".
 */
export const shortDecimal = (s: string): string => {
  const negative = s.charCodeAt(0) === 45
  let digits = negative ? s.slice(1) : s
  if (digits.includes(".")) {
    let end = digits.length
    while (digits.charCodeAt(end - 1) === 48) end--
    if (digits.charCodeAt(end - 1) === 46) end--
    digits = digits.slice(0, end)
  }
  let start = 0
  while (start < digits.length - 1 && digits.charCodeAt(start) === 48 && digits.charCodeAt(start + 1) !== 46) start++
  digits = digits.slice(start)
  return negative && digits !== "0" ? `-${digits}` : digits
}

/** CSV lines of trade rows. No field needs quoting: ids, a symbol, decimals, an instant and a boolean. */
export const tradeCsvLines = (rows: ReadonlyArray<TradeCsvRow>): string => {
  let out = ""
  for (const [id, us, symbol, price, quantity, first, last, maker] of rows) {
    out += `${id},${formatInstantMicros(us)},${symbol},${shortDecimal(price)},${shortDecimal(quantity)},${first},${last},${maker ? "true" : "false"}\r\n`
  }
  return out
}

const encoder = new TextEncoder()
const HEADER_BYTES = encoder.encode(`${TRADES_CSV_HEADER.join(",")}\r\n`)

export interface TradesCsv {
  readonly etag: string
  readonly cacheControl: string
  readonly filename: string
  /** Header first, then the day's trades by id, read from the store a chunk at a time as the client takes them. */
  readonly body: Stream.Stream<Uint8Array>
}

/**
 * One UTC day of trades as the trades CSV contract. The ETag is computed before the body, which is
 * streamed: it names the contract, the day and the day's stored trades (how many, lowest and highest
 * id), which only a new trade changes, since stored trades are never rewritten. One pass over the
 * day's index entries finds them; it also bounds the ids the body walks.
 */
export const tradesCsv = (repo: TradeRepo, symbol: string, date: string, nowMs: number) =>
  Effect.gen(function* () {
    const fromUs = Date.parse(`${date}T00:00:00Z`) * 1000
    const toUs = fromUs + DAY_MS * 1000
    const { count, firstId, lastId } = yield* repo.scan(symbol, fromUs, toUs, null)
    const etag = `"${createHash("sha256")
      .update(`trades.csv/1|${symbol}|${date}|${count}|${firstId}|${lastId}`)
      .digest("base64url")
      .slice(0, 32)}"`
    // a gap waiting for repair next to the day's ids may still bring trades of the day
    const complete =
      date < utcDate(nowMs) && firstId !== null && lastId !== null && !(yield* repo.pendingGap(symbol, firstId - 1, lastId + 1))
    const rows =
      firstId === null || lastId === null
        ? Stream.empty
        : Stream.unfoldChunkEffect(firstId - 1 as number | null, (after) =>
            after === null
              ? Effect.succeed(Option.none())
              : Effect.map(repo.csvRows(symbol, fromUs, toUs, after, lastId, TRADES_CSV_CHUNK_ROWS), (chunk) =>
                  chunk.length === 0
                    ? Option.none()
                    : Option.some([
                        Chunk.of(encoder.encode(tradeCsvLines(chunk))),
                        chunk.length < TRADES_CSV_CHUNK_ROWS ? null : chunk[chunk.length - 1]![0]
                      ] as const)
                )
          )
    return {
      etag,
      cacheControl: complete ? CLOSED_DAY_CACHE : OPEN_DAY_CACHE,
      filename: `trades_${symbol}_${date}.csv`,
      // the answer has begun when a read fails: the connection is cut, so the client sees it incomplete
      body: Stream.concat(
        Stream.succeed(HEADER_BYTES),
        rows.pipe(Stream.tapErrorCause((cause) => Effect.logWarning("trades CSV cut short", cause)), Stream.orDie)
      )
    } satisfies TradesCsv
  })
