import { Cause, Clock, Duration, Effect, Option, Ref, Schedule } from "effect"
import * as AppConfig from "../Config.js"
import { BinanceClient, type Ticker24h } from "../binance/BinanceClient.js"
import type { BinanceError } from "../binance/BinanceError.js"
import { isRetryable, retryPolicy } from "../binance/retry.js"
import { Broker } from "../broker/Broker.js"
import { formatInstantMicros, TICKER_24HR_SOURCE, type TickerEvent, type TickerSymbol } from "../domain/Ticker.js"
import { Health } from "../status/Health.js"

/** A Binance 24h ticker as a contract event observed at `observedMicros`. */
export const toEvent = (ticker: Ticker24h, observedMicros: number): TickerEvent => ({
  timestamp_utc: formatInstantMicros(observedMicros),
  symbol: ticker.symbol as TickerSymbol,
  lastPrice: ticker.lastPrice,
  priceChangePercent: ticker.priceChangePercent,
  volume: ticker.volume,
  source: TICKER_24HR_SOURCE,
  event_time: formatInstantMicros(ticker.closeTime * 1000)
})

/** Fetches all `symbols` in one request (retrying transient failures) and publishes one event per ticker. */
export const pollOnce = Effect.fn("Producer.pollOnce")(function* (symbols: ReadonlyArray<TickerSymbol>) {
  const client = yield* BinanceClient
  const broker = yield* Broker
  const health = yield* Health
  const batch = yield* client.ticker24h(symbols).pipe(
    // /health shows the failure at once, even while the cycle is still retrying.
    Effect.tapError((e) => Effect.zipRight(health.producerFailed(e.message), Effect.logDebug("binance request failed", Cause.fail(e)))),
    Effect.retry({ schedule: retryPolicy, while: isRetryable })
  )
  for (const reason of batch.skipped) yield* Effect.logWarning(`skipped a malformed ticker entry: ${reason}`)
  const observedMicros = Number((yield* Clock.currentTimeNanos) / 1000n)
  const events = batch.tickers.map((t) => toEvent(t, observedMicros))
  yield* broker.publish(events)
  return events
})

/**
 * After Binance rejects the symbol list (-1121), asks symbol by symbol which ones it does not know.
 * Returns the symbols to keep polling, or fails with the original error when none is left.
 */
const dropUnknownSymbols = (symbols: ReadonlyArray<TickerSymbol>, error: BinanceError) =>
  Effect.gen(function* () {
    const client = yield* BinanceClient
    const known = yield* Effect.filter(symbols, client.symbolExists)
    const unknown = symbols.filter((s) => !known.includes(s))
    yield* Effect.logError(
      `Binance does not know the symbol(s) ${unknown.join(", ")}; remove them from SYMBOLS. ` +
        (known.length > 0 ? `Polling continues with ${known.join(", ")}.` : "No valid symbol is left to poll.")
    )
    if (known.length === 0) return yield* Effect.fail(error)
    return known
  })

/**
 * The producer role: one request per cycle on a fixed cadence (no drift, no pile-up after a slow
 * cycle). A failed cycle is logged once and reported on /health; nothing here ends the loop.
 */
export const runProducer = Effect.gen(function* () {
  const health = yield* Health
  const client = yield* BinanceClient
  const interval = yield* AppConfig.pollInterval
  const active = yield* Ref.make(yield* AppConfig.symbols)
  yield* health.producerStarting(yield* Ref.get(active))
  yield* Effect.logInfo(`polling ${client.baseUrl} every ${Duration.format(interval)} for ${(yield* Ref.get(active)).join(", ")}`)

  const reportFailure = (e: BinanceError | { readonly message: string; readonly _tag: string }) =>
    Effect.zipRight(
      health.producerFailed(e.message),
      e._tag === "RateLimited" || e._tag === "BrokerError"
        ? Effect.logWarning(`poll failed: ${e.message}`)
        : Effect.logError(`poll failed: ${e.message}`)
    )

  const cycle = Effect.gen(function* () {
    const symbols = yield* Ref.get(active)
    const events = yield* pollOnce(symbols).pipe(
      Effect.catchTag("InvalidSymbols", (e) =>
        symbols.length === 1
          ? Effect.fail(e)
          : dropUnknownSymbols(symbols, e).pipe(
              Effect.tap((known) => Ref.set(active, known)),
              Effect.tap(health.producerSymbols),
              Effect.flatMap(pollOnce)
            )
      )
    )
    const weight = yield* client.usedWeight
    yield* health.producerSucceeded(Option.getOrNull(Option.map(weight, (w) => w.usedWeight1m)))
    yield* Effect.logInfo(`published ${events.length} ticker event(s)`)
  }).pipe(
    Effect.catchTags({
      RateLimited: reportFailure,
      RegionRestricted: reportFailure,
      InvalidSymbols: reportFailure,
      BinanceRejected: reportFailure,
      BinanceUnavailable: reportFailure,
      MalformedResponse: reportFailure,
      BrokerError: reportFailure
    })
  )

  yield* cycle.pipe(Effect.repeat(Schedule.fixed(interval)))
}).pipe(Effect.annotateLogs({ service: "producer" }))
