import { Cause, Clock, Duration, Effect, Either, Option } from "effect"
import { BinanceClient } from "../binance/BinanceClient.js"
import * as AppConfig from "../Config.js"
import { type Candle, fromKlineRow } from "../domain/Candles.js"
import type { TickerSymbol } from "../domain/Ticker.js"
import { isoInstant, MINUTE_MS } from "../domain/Time.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { TradeSink } from "../store/TickSink.js"
import { TradeRepo } from "../store/TradeRepo.js"
import { type TradeGap, TradeWriter } from "../store/TradeWriter.js"

/**
 * The share of Binance's request weight (6,000 a minute per IP) repairs may use, so the ticker poll
 * and a second process keep room: aggTrades (weight 4, 1,000 trades) then runs at most every 200 ms,
 * about 300,000 trades a minute.
 */
const REPAIR_WEIGHT_PER_MINUTE = 1_200
const AGG_TRADES_WEIGHT = 4
const KLINES_WEIGHT = 2
const PAGE = 1_000
/** How often stored gaps are looked for, and missing minutes. */
const GAP_SCAN = Duration.seconds(1)
const MINUTE_SCAN = Duration.seconds(30)
/** A closed bar arrives just after its minute ends; a minute counts as missing once this has passed too. */
const BAR_GRACE_MS = 15_000
/** Missing minutes are looked for this far back at most (a repair of older history is a backfill). */
const MINUTE_LOOKBACK_MS = 7 * 24 * 60 * MINUTE_MS
/** After a failed request (Binance unreachable, rate limited), the next try of the same work waits this long. */
const FAILURE_PAUSE = Duration.seconds(10)

type Part = { readonly fromId: number; readonly toId: number; readonly state: "repaired" | "unrepairable"; readonly reason?: string }

/**
 * The gap filler, run where trades are stored (`--role=all`, or each consumer in Kafka mode) when
 * SOURCE includes the streams. Aggregate trade ids are consecutive per symbol, so the store records
 * every jump as a missing range (TradeWriter); here each range is fetched through REST
 * `GET /api/v3/aggTrades?fromId=` (1,000 a request, paced within REPAIR_WEIGHT_PER_MINUTE) and stored
 * through the same sinks as streamed trades (idempotent). What Binance cannot return (older than it
 * serves, an empty answer) is recorded as unrepairable with the reason, once: never retried in a loop.
 * Closed minutes without a `klines` 1m candle since the first stored trade are fetched through
 * `GET /api/v3/klines` the same way. Runs in the background: live data never waits for it.
 */
export const runRepair = Effect.gen(function* () {
  const client = yield* BinanceClient
  const writer = yield* TradeWriter
  const sink = yield* TradeSink
  const tradeRepo = yield* TradeRepo
  const candles = yield* CandleRepo
  const symbols = yield* AppConfig.symbols
  const backfillMinutes = yield* AppConfig.tradesBackfillMinutes

  let nextRequestAt = 0
  /** Waits for this request's share of the weight budget. */
  const paced = <A, E>(weight: number, request: Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const at = Math.max(now, nextRequestAt)
      nextRequestAt = at + (weight * MINUTE_MS) / REPAIR_WEIGHT_PER_MINUTE
      if (at > now) yield* Effect.sleep(Duration.millis(at - now))
      return yield* request
    })

  const repairGap = (gap: TradeGap) =>
    Effect.gen(function* () {
      const parts: Array<Part> = []
      /** Adds a part, merged into the previous one when it continues it. */
      const add = (part: Part) => {
        const last = parts[parts.length - 1]
        if (last !== undefined && last.state === part.state && last.toId + 1 === part.fromId && last.reason === part.reason) {
          parts[parts.length - 1] = { ...last, toId: part.toId }
        } else parts.push(part)
      }
      let cursor = gap.fromId
      while (cursor <= gap.toId) {
        const page = yield* paced(AGG_TRADES_WEIGHT, client.aggTrades(gap.symbol as TickerSymbol, { fromId: cursor }, PAGE))
        const inGap = page.filter((t) => t.id >= cursor && t.id <= gap.toId)
        if (inGap.length === 0) {
          const reason =
            page.length === 0
              ? `Binance returned no trades from id ${cursor} on`
              : `Binance answered from id ${page[0]!.id} on: ids ${cursor}..${gap.toId} are older than it serves`
          add({ fromId: cursor, toId: gap.toId, state: "unrepairable", reason })
          break
        }
        yield* sink.writeBatch(inGap)
        for (const trade of inGap) {
          if (trade.id > cursor) {
            const reason =
              trade === page[0] ? `Binance answered from id ${trade.id} on: older ids are no longer served` : "missing from Binance's answer"
            add({ fromId: cursor, toId: trade.id - 1, state: "unrepairable", reason })
          }
          add({ fromId: trade.id, toId: trade.id, state: "repaired" })
          cursor = trade.id + 1
        }
        if (cursor <= gap.toId && page.length < PAGE) {
          // A short answer that stops inside the gap: Binance has nothing more there.
          add({ fromId: cursor, toId: gap.toId, state: "unrepairable", reason: `Binance's answer ended at id ${page[page.length - 1]!.id}, inside the gap` })
          break
        }
      }
      yield* writer.settleGap(gap, parts, isoInstant(yield* Clock.currentTimeMillis))
      const repaired = parts.filter((p) => p.state === "repaired").reduce((n, p) => n + p.toId - p.fromId + 1, 0)
      const lost = parts.filter((p) => p.state === "unrepairable")
      yield* Effect.logInfo(
        `gap ${gap.fromId}..${gap.toId}: ${repaired} trade(s) repaired` +
          (lost.length > 0 ? `; unrepairable: ${lost.map((p) => `${p.fromId}..${p.toId} (${p.reason})`).join(", ")}` : "")
      ).pipe(Effect.annotateLogs({ symbol: gap.symbol }))
    })

  /** Minutes (`symbol|openTime`) Binance had no kline for: said once, not asked again in this process. */
  const givenUp = new Set<string>()

  const repairMinutes = (symbol: TickerSymbol) =>
    Effect.gen(function* () {
      const first = yield* tradeRepo.firstTrade(symbol)
      if (Option.isNone(first)) return
      const now = yield* Clock.currentTimeMillis
      const floorMinute = (ms: number) => ms - (ms % MINUTE_MS)
      const from = Math.max(floorMinute(Math.floor(first.value.timeMicros / 1000)), floorMinute(now - MINUTE_LOOKBACK_MS))
      const to = floorMinute(now - BAR_GRACE_MS)
      if (to <= from) return
      for (const run of yield* tradeRepo.missingMinutes(symbol, from, to)) {
        let start = run.fromMs
        while (start < run.toMs) {
          if (givenUp.has(`${symbol}|${start}`)) {
            start += MINUTE_MS
            continue
          }
          const count = Math.min(PAGE, (run.toMs - start) / MINUTE_MS)
          const rows = yield* paced(KLINES_WEIGHT, client.klines(symbol, "1m", start, count))
          const end = start + count * MINUTE_MS
          const fetched: Array<Candle> = []
          for (const row of rows) {
            const candle = fromKlineRow(symbol, "1m", row, now)
            if (Either.isRight(candle) && candle.right.closed && candle.right.openTime >= start && candle.right.openTime < end) fetched.push(candle.right)
          }
          if (fetched.length > 0) yield* candles.upsert(fetched, "klines")
          const got = new Set(fetched.map((c) => c.openTime))
          const absent: Array<number> = []
          for (let m = start; m < end; m += MINUTE_MS) if (!got.has(m)) absent.push(m)
          if (absent.length > 0) {
            for (const m of absent) givenUp.add(`${symbol}|${m}`)
            yield* Effect.logWarning(
              `Binance returned no 1m kline for ${absent.length} minute(s) from ${isoInstant(absent[0]!)}; they stay missing in /coverage`
            ).pipe(Effect.annotateLogs({ symbol }))
          } else if (fetched.length > 0) {
            yield* Effect.logInfo(`${fetched.length} missing minute(s) from ${isoInstant(start)} repaired from klines`).pipe(Effect.annotateLogs({ symbol }))
          }
          start = end
        }
      }
    })

  /**
   * TRADES_BACKFILL_MINUTES on a first start: once a symbol's first streamed trade is stored, the
   * minutes before it are fetched (from `startTime`, then by id up to that first trade).
   */
  const backfill = (symbol: TickerSymbol): Effect.Effect<void, unknown> =>
    Effect.gen(function* () {
      let first = yield* tradeRepo.firstTrade(symbol)
      while (Option.isNone(first)) {
        yield* Effect.sleep(GAP_SCAN)
        first = yield* tradeRepo.firstTrade(symbol)
      }
      const firstId = first.value.id
      const startTime = Math.floor(first.value.timeMicros / 1000) - backfillMinutes * MINUTE_MS
      let page = yield* paced(AGG_TRADES_WEIGHT, client.aggTrades(symbol, { startTime }, PAGE))
      let stored = 0
      while (page.length > 0) {
        const before = page.filter((t) => t.id < firstId)
        if (before.length > 0) yield* sink.writeBatch(before)
        stored += before.length
        const last = page[page.length - 1]!.id
        if (before.length < page.length || last + 1 >= firstId || page.length < PAGE) break
        page = yield* paced(AGG_TRADES_WEIGHT, client.aggTrades(symbol, { fromId: last + 1 }, PAGE))
      }
      yield* Effect.logInfo(`backfilled ${stored} trade(s) of the ${backfillMinutes} minute(s) before the first streamed one`).pipe(
        Effect.annotateLogs({ symbol })
      )
      // History now starts earlier: its minutes are looked for now, not at the next scan.
      yield* repairMinutes(symbol)
    })

  /** A failed pass (Binance unreachable or limiting, a failing sink) is said and tried again later, never in a tight loop. */
  const patiently = (what: string) => <A, E, R>(work: Effect.Effect<A, E, R>) =>
    work.pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause as Cause.Cause<never>)
          : Effect.logWarning(`${what} failed; trying again in ${Duration.format(FAILURE_PAUSE)}`, Cause.squash(cause)).pipe(
              Effect.zipRight(Effect.sleep(FAILURE_PAUSE))
            )
      )
    )

  const gapLoop = Effect.gen(function* () {
    while (true) {
      for (const gap of yield* writer.openGaps) yield* patiently("repairing a trade gap")(repairGap(gap))
      yield* Effect.sleep(GAP_SCAN)
    }
  })
  const minuteLoop = Effect.gen(function* () {
    while (true) {
      for (const symbol of symbols) yield* patiently("repairing missing minutes")(repairMinutes(symbol))
      yield* Effect.sleep(MINUTE_SCAN)
    }
  })
  const backfills =
    backfillMinutes > 0
      ? Effect.forEach(
          symbols,
          (symbol) =>
            Effect.flatMap(tradeRepo.firstTrade(symbol), (first) =>
              Option.isSome(first) ? Effect.void : patiently("the trade backfill")(backfill(symbol))
            ),
          { concurrency: "unbounded", discard: true }
        )
      : Effect.void
  yield* Effect.logInfo("gap repair running: trade ids through /api/v3/aggTrades, closed minutes through /api/v3/klines")
  yield* Effect.all([gapLoop.pipe(patiently("the gap scan"), Effect.forever), minuteLoop.pipe(patiently("the minute scan"), Effect.forever), backfills], {
    concurrency: "unbounded",
    discard: true
  })
}).pipe(Effect.annotateLogs({ service: "repair" }))
