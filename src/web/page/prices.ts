import { serverNow } from "./api.js"
import { el, setText } from "./dom.js"
import { formatAge, formatCount, formatDecimal, parseInstant, type TickerJson, type TradeJson } from "./model.js"

/**
 * The live price table: per symbol the last price, the 24 h change, trades per minute and the age of
 * the newest event, which turns amber and then red when it grows well past the symbol's usual cadence.
 */

/** A trade price stands for the last price while trades keep coming; ticker prices otherwise. */
const TRADES_LEAD_MS = 30_000
/** Trade samples kept apart by at least this (trade ids are consecutive: counting needs no more). */
const SAMPLE_EVERY_MS = 250

interface Row {
  readonly symbol: string
  readonly tr: HTMLTableRowElement
  readonly price: HTMLTableCellElement
  readonly change: HTMLTableCellElement
  readonly rate: HTMLTableCellElement
  readonly age: HTMLTableCellElement
  lastPrice: string | undefined
  /** Event time (ms) of the last price shown. */
  priceAt: number
  lastTradeAt: number
  /** The newest event of any kind (ms), and the usual time between new events (moving average). */
  newestAt: number
  cadenceMs: number | undefined
  /** (time, id) of trades, at least SAMPLE_EVERY_MS apart, the newest last; `lastTradeId` the newest id. */
  samples: Array<{ readonly at: number; readonly id: number }>
  lastTradeId: number | undefined
  flash: ReturnType<typeof setTimeout> | undefined
}

export class PriceTable {
  private readonly rows = new Map<string, Row>()

  constructor(
    private readonly body: HTMLTableSectionElement,
    private readonly onSelect: (symbol: string) => void
  ) {}

  setSymbols(symbols: ReadonlyArray<string>) {
    this.body.textContent = ""
    this.rows.clear()
    for (const symbol of symbols) {
      const cell = (className: string) => el("td", { class: className }, "—")
      const price = cell("num price")
      const change = cell("num change")
      const rate = cell("num rate")
      const age = cell("num age")
      const tr = el("tr", { "data-symbol": symbol, tabindex: "0", title: `Show ${symbol} on the chart` }, el("th", { scope: "row" }, symbol), price, change, rate, age)
      tr.addEventListener("click", () => this.onSelect(symbol))
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") this.onSelect(symbol)
      })
      this.body.appendChild(tr)
      this.rows.set(symbol, {
        symbol, tr, price, change, rate, age,
        lastPrice: undefined, priceAt: 0, lastTradeAt: 0, newestAt: 0, cadenceMs: undefined,
        samples: [], lastTradeId: undefined, flash: undefined
      })
    }
  }

  select(symbol: string) {
    for (const row of this.rows.values()) row.tr.classList.toggle("selected", row.symbol === symbol)
  }

  ticker(event: TickerJson) {
    const row = this.rows.get(event.symbol)
    if (row === undefined) return
    const at = parseInstant(event.event_time)
    this.seen(row, at)
    const change = Number(event.priceChangePercent)
    setText(row.change, Number.isFinite(change) ? `${change > 0 ? "+" : ""}${change.toFixed(2)} %` : "—")
    row.change.classList.toggle("up", change > 0)
    row.change.classList.toggle("down", change < 0)
    if (at - row.lastTradeAt > TRADES_LEAD_MS && at >= row.priceAt) this.price(row, event.lastPrice, at)
  }

  trade(trade: TradeJson) {
    const row = this.rows.get(trade.symbol)
    if (row === undefined) return
    const at = parseInstant(trade.trade_time)
    this.seen(row, at)
    row.lastTradeAt = Math.max(row.lastTradeAt, at)
    if (at >= row.priceAt) this.price(row, trade.price, at)
    row.lastTradeId = Math.max(row.lastTradeId ?? trade.agg_trade_id, trade.agg_trade_id)
    const last = row.samples[row.samples.length - 1]
    if (last === undefined || at - last.at >= SAMPLE_EVERY_MS) row.samples.push({ at, id: trade.agg_trade_id })
  }

  private seen(row: Row, at: number) {
    if (at <= row.newestAt) return
    if (row.newestAt > 0) {
      const gap = at - row.newestAt
      row.cadenceMs = row.cadenceMs === undefined ? gap : 0.9 * row.cadenceMs + 0.1 * gap
    }
    row.newestAt = at
  }

  private price(row: Row, price: string, at: number) {
    row.priceAt = at
    if (price === row.lastPrice) return
    const direction = row.lastPrice === undefined ? "" : Number(price) > Number(row.lastPrice) ? "tick-up" : "tick-down"
    row.lastPrice = price
    setText(row.price, formatDecimal(price))
    row.price.dataset["raw"] = price
    if (direction !== "") {
      row.price.classList.remove("tick-up", "tick-down")
      row.price.classList.add(direction)
      clearTimeout(row.flash)
      row.flash = setTimeout(() => row.price.classList.remove("tick-up", "tick-down"), 700)
    }
  }

  /**
   * The trades of the minute before `head` (by consecutive ids, so a trade the page never saw still
   * counts). `head` is the newest event time of any symbol: minutes are counted on the feed's own time,
   * so a feed running behind the clock (a replay, a backlog) still shows its rate, and a symbol whose
   * trades stop while others' go on drops to 0.
   */
  private tradesPerMinute(row: Row, head: number): number | undefined {
    if (row.lastTradeId === undefined || row.samples.length === 0) return undefined
    const cutoff = head - 60_000
    // keep one sample at or before the cutoff, drop older ones
    let first = 0
    while (first + 1 < row.samples.length && row.samples[first + 1]!.at <= cutoff) first++
    if (first > 0) row.samples.splice(0, first)
    const base = row.samples[0]!
    const span = head - base.at
    if (span < 5_000) return undefined
    return ((row.lastTradeId - base.id) * 60_000) / span
  }

  /** Refreshes the computed cells (ages, rates): called every second. */
  tick() {
    const now = serverNow()
    const head = Math.max(0, ...[...this.rows.values()].map((r) => r.newestAt))
    for (const row of this.rows.values()) {
      const rate = this.tradesPerMinute(row, head)
      setText(row.rate, rate === undefined ? "—" : formatCount(Math.round(rate)))
      if (row.newestAt === 0) {
        setText(row.age, "no events yet")
        row.age.dataset["state"] = "none"
        continue
      }
      const age = now - row.newestAt
      const cadence = row.cadenceMs ?? 1_000
      const state = age > Math.max(60_000, 10 * cadence) ? "old" : age > Math.max(10_000, 3 * cadence) ? "stale" : "fresh"
      setText(row.age, formatAge(age))
      row.age.dataset["state"] = state
      row.tr.dataset["state"] = state
      row.age.title = `newest event ${new Date(row.newestAt).toISOString()}; ${state === "fresh" ? "as fresh as usual" : "later than usual for this symbol"}`
    }
  }
}
