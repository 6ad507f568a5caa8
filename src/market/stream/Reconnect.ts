/**
 * When to try a connection again. Pure, so the rules are tested without sockets: capped exponential
 * backoff with jitter, a process-wide cap on attempts (Binance allows 300 connection attempts per
 * 5 minutes per IP), and one attempt a minute at most while the handshake is refused (HTTP 451).
 */
export const ATTEMPT_WINDOW_MS = 5 * 60_000
export const MAX_ATTEMPTS_PER_WINDOW = 300
export const BACKOFF_BASE_MS = 500
export const BACKOFF_CAP_MS = 30_000
export const REJECTED_RETRY_MS = 60_000

/** The delay before attempt number `failures + 1` after `failures` failed ones: full range [d/2, d]. */
export const backoffMs = (failures: number, random: number): number => {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 20))
  return Math.round(ceiling * (0.5 + random / 2))
}

/** The connection attempts of the process in the last window, shared by all its connections. */
export class AttemptLimiter {
  private readonly times: Array<number> = []
  constructor(
    private readonly max = MAX_ATTEMPTS_PER_WINDOW,
    private readonly windowMs = ATTEMPT_WINDOW_MS
  ) {}

  /** The earliest instant (epoch ms, at least `now`) at which another attempt stays within the cap. */
  nextAllowed(now: number): number {
    while (this.times.length > 0 && this.times[0]! <= now - this.windowMs) this.times.shift()
    return this.times.length < this.max ? now : this.times[this.times.length - this.max]! + this.windowMs
  }

  record(now: number): void {
    this.times.push(now)
  }
}
