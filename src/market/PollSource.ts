import { Cause, Clock, Deferred, Duration, Effect, Layer, Option, Ref } from "effect"
import * as AppConfig from "../Config.js"
import { BinanceClient, type Ticker24h } from "../binance/BinanceClient.js"
import type { BinanceError } from "../binance/BinanceError.js"
import { isRetryable, retryPolicy } from "../binance/retry.js"
import { Broker } from "../broker/Broker.js"
import { formatInstantMicros, type Tick, TICKER_24HR_SOURCE, type TickerEvent, type TickerSymbol } from "../domain/Ticker.js"
import { isoInstant } from "../domain/Time.js"
import { Health } from "../status/Health.js"
import { StopRequested } from "../app/Shutdown.js"
import { MarketSource, watchedPublish } from "./MarketSource.js"

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

/** A Binance 24h ticker as a Tick observed at `observedMicros`: the producer knows its instant and price already. */
const toTickAt = (ticker: Ticker24h, observedMicros: number): Tick => {
  const event = toEvent(ticker, observedMicros)
  return { event, symbol: event.symbol, tsMicros: observedMicros, price: Number(ticker.lastPrice) }
}

/** Fetches all `symbols` in one request (retrying transient failures) and publishes one event per ticker. */
export const pollOnce = Effect.fn("Producer.pollOnce")(function* (symbols: ReadonlyArray<TickerSymbol>) {
  const client = yield* BinanceClient
  const health = yield* Health
  const publish = yield* watchedPublish
  const batch = yield* client.ticker24h(symbols).pipe(
    // /health shows the failure at once, even while the cycle is still retrying.
    Effect.tapError((e) => Effect.zipRight(health.producerFailed(e.message), Effect.logDebug("binance request failed", Cause.fail(e)))),
    Effect.retry({ schedule: retryPolicy, while: isRetryable })
  )
  for (const reason of batch.skipped) yield* Effect.logWarning(`skipped a malformed ticker entry: ${reason}`)
  const observedMicros = Number((yield* Clock.currentTimeNanos) / 1000n)
  const ticks = batch.tickers.map((t) => toTickAt(t, observedMicros))
  yield* publish(ticks)
  return ticks
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
 * The producer role: one request per cycle on a fixed cadence (no drift; a slow cycle is followed at
 * once by the next, then the grid resumes). After a cycle that had to wait out Binance's Retry-After,
 * the cadence restarts from the end of that wait, so the request that ends a ban is never followed by
 * a second one back to back. A failed cycle is logged once and reported on /health; nothing here ends
 * the loop but a stop request (`StopRequested`), honoured between cycles: a cycle in flight finishes,
 * so a Binance answer that arrives after SIGTERM is still published.
 */
export const runProducer = Effect.gen(function* () {
  const health = yield* Health
  const client = yield* BinanceClient
  const interval = yield* AppConfig.pollInterval
  const stop = yield* Effect.serviceOption(StopRequested)
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

  /** Shows Binance's Retry-After on /health; a wait from an earlier run is the producer's current state. */
  const showRateLimit = Effect.gen(function* () {
    const until = yield* client.blockedUntil
    yield* health.producerRateLimitedUntil(until)
    if (until > (yield* Clock.currentTimeMillis) && (yield* health.producer).state === "starting") {
      yield* health.producerFailed(`waiting for Binance's Retry-After: no request before ${isoInstant(until)}`)
    }
  })

  const cycle = Effect.gen(function* () {
    yield* showRateLimit
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
    }),
    Effect.zipRight(showRateLimit)
  )

  const stopped = Option.isSome(stop) ? Deferred.isDone(stop.value) : Effect.succeed(false)
  /** Sleeps `millis`, or less when a stop is requested meanwhile. */
  const pause = (millis: number) =>
    Option.isSome(stop) ? Effect.raceFirst(Effect.sleep(Duration.millis(millis)), Deferred.await(stop.value)) : Effect.sleep(Duration.millis(millis))

  const step = Duration.toMillis(interval)
  let anchor: number | undefined // the cadence's grid: anchor + k * step
  let scheduled = 0 // when the cycle that just ran was due
  while (!(yield* stopped)) {
    // A known Retry-After is waited out here, where a stop request ends the wait at once.
    const until = yield* client.blockedUntil
    const now = yield* Clock.currentTimeMillis
    if (until > now) {
      yield* showRateLimit
      yield* pause(until - now)
      if (yield* stopped) break
    }
    yield* cycle
    const end = yield* Clock.currentTimeMillis
    const waitedForBinance = (yield* client.blockedUntil) > scheduled
    if (anchor === undefined || waitedForBinance) {
      anchor = end
      scheduled = end + step
    } else if (end > scheduled + step) {
      scheduled = end // running behind: the next cycle runs at once, then the grid resumes
    } else {
      scheduled = anchor + (Math.floor((end - anchor) / step) + 1) * step
    }
    if (scheduled > end) yield* pause(scheduled - end)
  }
  yield* Effect.logInfo("producer stopped")
}).pipe(Effect.annotateLogs({ service: "producer" }))

/** `SOURCE=poll`: Binance's REST 24h tickers, polled on a fixed cadence. */
export const PollSourceLive = Layer.effect(
  MarketSource,
  Effect.map(Effect.context<BinanceClient | Broker | Health>(), (context) =>
    MarketSource.of({ name: "poll", run: runProducer.pipe(Effect.provide(context), Effect.orDie) })
  )
)
