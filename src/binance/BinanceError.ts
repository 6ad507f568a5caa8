import { Data, Duration } from "effect"

/** 429 (slow down) or 418 (IP banned): wait at least `retryAfter` before the next request to Binance. */
export class RateLimited extends Data.TaggedError("RateLimited")<{
  readonly status: 429 | 418
  readonly retryAfter: Duration.Duration
}> {
  override get message() {
    const wait = Duration.format(this.retryAfter)
    return this.status === 418
      ? `Binance banned this IP for ${wait} (HTTP 418); polling pauses until the ban ends`
      : `Binance rate limit reached (HTTP 429); waiting ${wait} before the next request`
  }
}

/** HTTP 451: Binance refuses to serve the caller's region. Retrying the same host cannot help. */
export class RegionRestricted extends Data.TaggedError("RegionRestricted")<{ readonly baseUrl: string }> {
  override get message() {
    return `Binance refuses requests from this region (HTTP 451 from ${this.baseUrl}); set BINANCE_BASE_URL to a host that serves your region, e.g. https://data-api.binance.vision, or run from a region Binance serves`
  }
}

/** HTTP 400 with code -1121: one or more requested symbols do not exist on Binance. */
export class InvalidSymbols extends Data.TaggedError("InvalidSymbols")<{
  readonly symbols: ReadonlyArray<string>
}> {
  override get message() {
    return `Binance does not know the symbol(s) ${this.symbols.join(", ")}; remove them from SYMBOLS`
  }
}

/** Any other 4xx answer: a request Binance rejects will be rejected again, so it is not retried. */
export class BinanceRejected extends Data.TaggedError("BinanceRejected")<{
  readonly status: number
  readonly code: number | undefined
  readonly msg: string
}> {
  override get message() {
    return `Binance rejected the request (HTTP ${this.status}${this.code === undefined ? "" : `, code ${this.code}`}): ${this.msg}`
  }
}

/** 5xx, timeouts and network failures: transient, retried with capped exponential backoff. */
export class BinanceUnavailable extends Data.TaggedError("BinanceUnavailable")<{
  readonly reason: "status" | "timeout" | "network"
  readonly detail: string
}> {
  override get message() {
    return `Binance is unreachable (${this.reason}: ${this.detail})`
  }
}

/** A 200 answer whose body is not what Binance documents: logged and skipped. */
export class MalformedResponse extends Data.TaggedError("MalformedResponse")<{ readonly detail: string }> {
  override get message() {
    return `Binance sent a response the platform cannot read: ${this.detail}`
  }
}

export type BinanceError =
  | RateLimited
  | RegionRestricted
  | InvalidSymbols
  | BinanceRejected
  | BinanceUnavailable
  | MalformedResponse
