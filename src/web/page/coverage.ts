import { getJson, NetworkError } from "./api.js"
import { el, replaceChildren } from "./dom.js"
import { type CoverageJson, formatCount, formatTime, type IdRange, parseInstant } from "./model.js"

/**
 * Today's coverage per symbol (GET /coverage?symbol=…&days=1): a strip of the stored trade ids with the
 * gaps waiting for repair, repaired and unrepairable, and a strip of today's minutes with and without
 * a closed Binance 1m kline. A symbol without a stored trade (404 NoTrades) shows "no trades yet".
 */

export interface GapTotals {
  readonly symbols: number
  readonly missing: { ranges: number; ids: number }
  readonly repaired: { ranges: number; ids: number }
  readonly unrepairable: { ranges: number; ids: number }
}

const idsIn = (ranges: ReadonlyArray<IdRange>) => ranges.reduce((n, r) => n + (r.to_id - r.from_id + 1), 0)

type Segment = { readonly from: number; readonly to: number; readonly kind: string; readonly title: string }

/** A strip over [lo, hi] with `segments` marked on it (each at least a sliver wide, so one id shows). */
const strip = (label: string, lo: number, hi: number, segments: ReadonlyArray<Segment>, base: string) => {
  const span = Math.max(1, hi - lo)
  const bar = el("div", { class: `strip ${base}`, role: "img", "aria-label": label, title: label })
  for (const s of segments) {
    const left = Math.min(100, Math.max(0, ((s.from - lo) / span) * 100))
    const width = Math.max(0.4, Math.min(100 - left, ((s.to - s.from) / span) * 100))
    const mark = el("span", { class: `seg ${s.kind}`, title: s.title })
    mark.style.left = `${left}%`
    mark.style.width = `${width}%`
    bar.appendChild(mark)
  }
  return bar
}

const rangeText = (r: IdRange) => (r.from_id === r.to_id ? `id ${r.from_id}` : `ids ${r.from_id}–${r.to_id}`)

const render = (c: CoverageJson): HTMLElement => {
  const t = c.trades
  const from = parseInstant(c.from)
  const to = parseInstant(c.to)
  const block = el("div", { class: "cov", "data-symbol": c.symbol })
  const missingIds = idsIn(t.missing)
  const summary =
    `${formatCount(t.stored)} trades stored` +
    (t.first_id !== null && t.last_id !== null ? ` (ids ${t.first_id}–${t.last_id})` : "") +
    ` · ${t.missing.length === 0 ? "complete" : `${formatCount(missingIds)} missing in ${t.missing.length} gap(s)`}` +
    ` · ${t.repaired.length} repaired · ${t.unrepairable.length} unrepairable`
  block.appendChild(el("div", { class: "cov-head" }, el("strong", {}, c.symbol), el("span", { class: "note" }, summary)))
  if (t.first_id !== null && t.last_id !== null) {
    const segments: Array<Segment> = [
      ...t.repaired.map((r) => ({ from: r.from_id, to: r.to_id + 1, kind: "repaired", title: `repaired ${rangeText(r)}${r.at ? ` at ${r.at}` : ""}` })),
      ...t.unrepairable.map((r) => ({ from: r.from_id, to: r.to_id + 1, kind: "unrepairable", title: `unrepairable ${rangeText(r)}: ${r.reason ?? ""}` })),
      ...t.missing.map((r) => ({ from: r.from_id, to: r.to_id + 1, kind: "missing", title: `missing ${rangeText(r)}` }))
    ]
    const lo = Math.min(t.first_id, ...segments.map((s) => s.from))
    const hi = Math.max(t.last_id + 1, ...segments.map((s) => s.to))
    block.appendChild(el("div", { class: "cov-row" }, el("span", { class: "cov-label" }, "trade ids"), strip(`trade ids ${lo}–${hi - 1}: ${summary}`, lo, hi, segments, "stored")))
  }
  // minutes closed by `to`: with a kline unless listed missing; the minute under way is neither
  const closedEnd = Math.max(from, Math.floor(to / 60_000) * 60_000)
  const minutes: Array<Segment> = [
    ...(closedEnd > from ? [{ from, to: closedEnd, kind: "kline", title: "closed minutes with a Binance 1m kline" }] : []),
    ...c.minutes.missing.map((m) => ({
      from: parseInstant(m.from),
      to: parseInstant(m.to),
      kind: "nokline",
      title: `no closed Binance 1m kline ${formatTime(parseInstant(m.from))} – ${formatTime(parseInstant(m.to))}`
    }))
  ]
  const total = Math.round((closedEnd - from) / 60_000)
  const klineText = `1m klines: ${formatCount(c.minutes.covered)} of ${formatCount(total)} closed minute(s) since ${formatTime(from)}`
  block.appendChild(el("div", { class: "cov-row" }, el("span", { class: "cov-label" }, "1m klines"), strip(klineText, from, to, minutes, "pending")))
  return block
}

/** Loads and shows the coverage of `symbols` in `container`; returns the gap totals (undefined: none could be read). */
export const refreshCoverage = async (container: HTMLElement, symbols: ReadonlyArray<string>, signal: AbortSignal): Promise<GapTotals | undefined> => {
  const totals = { symbols: 0, missing: { ranges: 0, ids: 0 }, repaired: { ranges: 0, ids: 0 }, unrepairable: { ranges: 0, ids: 0 } }
  const blocks = await Promise.all(
    symbols.map(async (symbol): Promise<HTMLElement> => {
      try {
        const reply = await getJson<CoverageJson & { readonly message?: string }>(`/coverage?symbol=${encodeURIComponent(symbol)}&days=1`, signal)
        if (reply.status === 200 && reply.body !== undefined) {
          const t = reply.body.trades
          totals.symbols++
          totals.missing.ranges += t.missing.length
          totals.missing.ids += idsIn(t.missing)
          totals.repaired.ranges += t.repaired.length
          totals.repaired.ids += idsIn(t.repaired)
          totals.unrepairable.ranges += t.unrepairable.length
          totals.unrepairable.ids += idsIn(t.unrepairable)
          return render(reply.body)
        }
        const why =
          reply.status === 404 ? "no trades yet" : reply.status === 401 ? "an API key is needed" : `GET /coverage answered ${reply.status}${reply.body?.message ? `: ${reply.body.message}` : ""}`
        return el("div", { class: "cov", "data-symbol": symbol }, el("div", { class: "cov-head" }, el("strong", {}, symbol), el("span", { class: "note empty" }, why)))
      } catch (e) {
        if (!(e instanceof NetworkError)) throw e
        return el("div", { class: "cov", "data-symbol": symbol }, el("div", { class: "cov-head" }, el("strong", {}, symbol), el("span", { class: "note" }, "the server does not answer")))
      }
    })
  )
  if (signal.aborted) return undefined
  replaceChildren(container, ...blocks, el("div", { class: "legend note" }, legend("stored", "trade ids stored"), legend("missing", "missing"), legend("repaired", "repaired"), legend("unrepairable", "unrepairable"), legend("kline", "minute with a Binance kline"), legend("nokline", "minute without"), legend("pending", "under way")))
  return totals.symbols > 0 ? totals : undefined
}

const legend = (kind: string, text: string) => el("span", { class: "legend-item" }, el("span", { class: `swatch ${kind}` }), text)
