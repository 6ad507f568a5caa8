import { Effect, Option } from "effect"
import { DAY_MS, isoInstant, MINUTE_MS } from "../domain/Time.js"
import type { IdRange, TradeGap, TradeRepo } from "../store/TradeRepo.js"

/** What /coverage answers (the `Coverage` schema of api/AggTradesApi.ts). */
export interface CoverageReport {
  readonly symbol: string
  readonly from: string
  readonly to: string
  readonly trades: {
    readonly first_id: number | null
    readonly last_id: number | null
    readonly stored: number
    readonly missing: ReadonlyArray<{ readonly from_id: number; readonly to_id: number }>
    readonly repaired: ReadonlyArray<{ readonly from_id: number; readonly to_id: number; readonly at: string }>
    readonly unrepairable: ReadonlyArray<{ readonly from_id: number; readonly to_id: number; readonly reason: string }>
  }
  readonly minutes: {
    readonly covered: number
    readonly missing: ReadonlyArray<{ readonly from: string; readonly to: string }>
  }
}

/** `ranges` less every id that `cut` covers; both sorted by `fromId`. */
export const subtractRanges = (ranges: ReadonlyArray<IdRange>, cut: ReadonlyArray<IdRange>): Array<IdRange> => {
  const out: Array<IdRange> = []
  for (const range of ranges) {
    let from = range.fromId
    for (const c of cut) {
      if (c.toId < from || c.fromId > range.toId) continue
      if (c.fromId > from) out.push({ fromId: from, toId: c.fromId - 1 })
      from = Math.max(from, c.toId + 1)
      if (from > range.toId) break
    }
    if (from <= range.toId) out.push({ fromId: from, toId: range.toId })
  }
  return out
}

/** Sorted, with overlapping and adjacent ranges joined. */
export const mergeRanges = (ranges: ReadonlyArray<IdRange>): Array<IdRange> => {
  const out: Array<{ fromId: number; toId: number }> = []
  for (const r of [...ranges].sort((a, b) => a.fromId - b.fromId)) {
    const last = out[out.length - 1]
    if (last !== undefined && r.fromId <= last.toId + 1) last.toId = Math.max(last.toId, r.toId)
    else out.push({ fromId: r.fromId, toId: r.toId })
  }
  return out
}

const asRange = (g: TradeGap): IdRange => ({ fromId: g.from_id, toId: g.to_id })

/**
 * How complete the stored history of `symbol` is over the last `days` UTC days (today included, as
 * in the BI contracts), counted from the symbol's first stored trade; None when it has none.
 *
 * - The window is [from, to): `from` is the later of the first day's midnight and the minute of the
 *   first stored trade, `to` the instant asked.
 * - Trades: the ids stored in the window (first, last, how many), and the recorded gaps that may hold
 *   trades of the window: every gap above the last id stored before `from`. `missing` is the gaps
 *   waiting for repair plus any ids absent between stored ones that no gap records yet.
 * - Minutes: the closed minutes from `from` to the last minute closed at `to` that have a closed 1m
 *   kline (`covered`), and the runs that have none (`to` exclusive).
 */
export const coverage = (repo: TradeRepo, symbol: string, days: number, nowMs: number) =>
  Effect.gen(function* () {
    const first = yield* repo.firstTrade(symbol)
    if (Option.isNone(first)) return Option.none<CoverageReport>()
    const windowStart = Math.floor((nowMs - (days - 1) * DAY_MS) / DAY_MS) * DAY_MS
    const firstMinute = Math.floor(first.value.timeMicros / 1000 / MINUTE_MS) * MINUTE_MS
    const fromMs = Math.min(Math.max(windowStart, firstMinute), nowMs)
    const before = yield* repo.lastTradeBefore(symbol, fromMs * 1000)
    const previousId = Option.isSome(before) ? before.value.id : null
    const scan = yield* repo.scan(symbol, fromMs * 1000, nowMs * 1000, previousId)
    const gaps = yield* repo.gaps(symbol, previousId ?? first.value.id)
    const minutes = yield* repo.minuteCoverage(symbol, fromMs, nowMs)

    const recorded = gaps.filter((g) => g.state !== "repaired").map(asRange)
    const missing = mergeRanges([
      ...gaps.filter((g) => g.state === "missing").map(asRange),
      ...subtractRanges(scan.holes, mergeRanges(recorded))
    ])
    return Option.some<CoverageReport>({
      symbol,
      from: isoInstant(fromMs),
      to: isoInstant(nowMs),
      trades: {
        first_id: scan.firstId,
        last_id: scan.lastId,
        stored: scan.count,
        missing: missing.map((r) => ({ from_id: r.fromId, to_id: r.toId })),
        repaired: gaps
          .filter((g) => g.state === "repaired")
          .map((g) => ({ from_id: g.from_id, to_id: g.to_id, at: g.resolved_at ?? g.detected_at })),
        unrepairable: gaps
          .filter((g) => g.state === "unrepairable")
          .map((g) => ({ from_id: g.from_id, to_id: g.to_id, reason: g.reason ?? "" }))
      },
      minutes: {
        covered: minutes.covered,
        missing: minutes.missing.map((run) => ({ from: isoInstant(run.fromMs), to: isoInstant(run.toMs) }))
      }
    })
  })
