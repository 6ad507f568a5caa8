/** Lengths of time in milliseconds, and the UTC spellings of an epoch-ms instant. */

export const MINUTE_MS = 60_000
export const HOUR_MS = 60 * MINUTE_MS
export const DAY_MS = 24 * HOUR_MS

/** ISO-8601 in UTC with milliseconds: `2026-01-15T14:03:22.913Z`. */
export const isoInstant = (ms: number): string => new Date(ms).toISOString()

/** `YYYY-MM-DD` of an epoch-ms instant, in UTC. */
export const utcDate = (ms: number): string => isoInstant(ms).slice(0, 10)
