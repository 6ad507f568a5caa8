import { Duration, Schedule } from "effect"
import type { BinanceError } from "./BinanceError.js"

/**
 * Within one poll cycle: 5xx, timeouts and network errors retry with capped exponential backoff and
 * jitter; a 429 retries too, and the client itself holds the request until Retry-After has passed.
 * A 418 ban, a 451, a rejected request and a malformed body are not retried.
 */
export const isRetryable = (e: BinanceError): boolean =>
  e._tag === "BinanceUnavailable" || (e._tag === "RateLimited" && e.status === 429)

export const retryPolicy = Schedule.exponential("500 millis").pipe(
  Schedule.jittered,
  Schedule.modifyDelay((delay) => Duration.min(delay, Duration.seconds(30))),
  Schedule.intersect(Schedule.recurs(4))
)
