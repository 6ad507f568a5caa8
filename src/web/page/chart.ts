import {
  CandlestickSeries,
  type CandlestickData,
  createChart,
  HistogramSeries,
  type HistogramData,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp
} from "lightweight-charts"
import { getJson, serverNow } from "./api.js"
import { type CandleJson, decimalsOf, formatCount, formatTime, type Interval, INTERVAL_MS, parseInstant } from "./model.js"

/**
 * The candlestick chart of the selected symbol and interval, with volume (TradingView's
 * lightweight-charts; its attribution logo stays on). History comes from GET /candles; live prices
 * move the newest candle and open the next one when its time comes; closed 1m candles from the stream
 * replace theirs; the newest candles are asked for again every 30 s (and after a closed candle at
 * coarser intervals), so they end as the server has them (Binance klines win over tick-derived ones).
 */

/** Candles shown per interval: 6 h of 1m, 2 days of 5m, 30 days of 1h, 2 years of 1d (at most 5000 an answer). */
const HISTORY: Readonly<Record<Interval, number>> = { "1m": 360, "5m": 576, "1h": 720, "1d": 730 }
const TAIL_REFRESH_MS = 30_000

interface Bar {
  /** Open time, seconds. */
  readonly time: number
  open: number
  high: number
  low: number
  close: number
  volume: number
}

/** Why the candles could not be had, as a sentence for the page. */
class Unavailable extends Error {}

const UP = "#26a69a"
const DOWN = "#ef5350"

const barOf = (c: CandleJson): Bar => ({
  time: Math.floor(parseInstant(c.open_time) / 1000),
  open: Number(c.open),
  high: Number(c.high),
  low: Number(c.low),
  close: Number(c.close),
  volume: Number(c.volume)
})

const candleData = (b: Bar): CandlestickData<UTCTimestamp> => ({ time: b.time as UTCTimestamp, open: b.open, high: b.high, low: b.low, close: b.close })
const volumeData = (b: Bar): HistogramData<UTCTimestamp> => ({
  time: b.time as UTCTimestamp,
  value: b.volume,
  color: b.close >= b.open ? "rgba(38, 166, 154, 0.45)" : "rgba(239, 83, 80, 0.45)"
})

export class CandleChart {
  private readonly chart: IChartApi
  private readonly candles: ISeriesApi<"Candlestick">
  private readonly volume: ISeriesApi<"Histogram">
  private bars: Array<Bar> = []
  private symbol = ""
  private interval: Interval = "1m"
  private loaded = false
  /** Bumped at each show(): answers for an earlier choice are dropped. */
  private generation = 0
  private tailTimer: ReturnType<typeof setTimeout> | undefined
  private lastTail = 0
  private decimals = 2
  private message = ""

  constructor(
    private readonly container: HTMLElement,
    private readonly status: HTMLElement
  ) {
    this.chart = createChart(container, {
      autoSize: true,
      layout: { background: { color: "#131722" }, textColor: "#d1d4dc", attributionLogo: true },
      grid: { vertLines: { color: "#1f2430" }, horzLines: { color: "#1f2430" } },
      rightPriceScale: { borderColor: "#2a2e39" },
      timeScale: { borderColor: "#2a2e39", timeVisible: true, secondsVisible: false, rightOffset: 6 },
      localization: { locale: "en-US" }
    })
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN
    })
    this.volume = this.chart.addSeries(HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false })
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } })
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } })
    setInterval(() => void this.refreshTail(), TAIL_REFRESH_MS)
  }

  /** Loads and shows `symbol` at `interval`. */
  async show(symbol: string, interval: Interval): Promise<void> {
    const generation = ++this.generation
    this.symbol = symbol
    this.interval = interval
    this.loaded = false
    this.bars = []
    this.candles.setData([])
    this.volume.setData([])
    this.container.dataset["symbol"] = symbol
    this.container.dataset["interval"] = interval
    this.container.dataset["state"] = "loading"
    this.render(`loading ${symbol} ${interval}…`)
    const step = INTERVAL_MS[interval]
    const end = Math.floor(serverNow() / step) * step + step
    const start = end - HISTORY[interval] * step
    const reply = await this.fetchCandles(start, end).catch((e: unknown) => e)
    if (generation !== this.generation) return
    if (!Array.isArray(reply)) {
      this.container.dataset["state"] = "error"
      this.render(reply instanceof Unavailable ? reply.message : `could not load candles: ${String(reply)}`)
      return
    }
    this.bars = reply.map(barOf)
    this.decimals = Math.min(8, Math.max(2, ...reply.slice(-50).flatMap((c) => [decimalsOf(c.close), decimalsOf(c.open)])))
    this.candles.applyOptions({ priceFormat: { type: "price", precision: this.decimals, minMove: 10 ** -this.decimals } })
    this.candles.setData(this.bars.map(candleData))
    this.volume.setData(this.bars.map(volumeData))
    this.chart.timeScale().scrollToRealTime()
    this.loaded = true
    this.lastTail = Date.now()
    this.render()
  }

  /** GET /candles for [start, end) of the current choice: the candles, or a sentence saying why not. */
  private async fetchCandles(start: number, end: number): Promise<ReadonlyArray<CandleJson>> {
    const query = new URLSearchParams({
      symbol: this.symbol,
      interval: this.interval,
      start: new Date(start).toISOString(),
      end: new Date(end).toISOString()
    })
    const reply = await getJson<ReadonlyArray<CandleJson>>(`/candles?${query}`)
    if (reply.status === 200 && Array.isArray(reply.body)) return reply.body
    if (reply.status === 401) throw new Unavailable("an API key is needed for candles")
    const body = reply.body as { readonly message?: unknown } | undefined
    const message = typeof body?.message === "string" ? body.message : undefined
    throw new Unavailable(`GET /candles answered ${reply.status}${message !== undefined ? `: ${message}` : ""}`)
  }

  /** A live price of `symbol` at `at` (ms): moves the newest candle, or opens the next one. */
  price(symbol: string, at: number, price: number) {
    if (!this.loaded || symbol !== this.symbol || !Number.isFinite(price)) return
    const step = INTERVAL_MS[this.interval]
    const time = Math.floor(Math.floor(at / step) * step) / 1000
    const last = this.bars[this.bars.length - 1]
    if (last !== undefined && time < last.time) return // an older candle: the next refresh has it
    if (last !== undefined && time === last.time) {
      last.high = Math.max(last.high, price)
      last.low = Math.min(last.low, price)
      last.close = price
      this.put(last)
    } else {
      this.put({ time, open: price, high: price, low: price, close: price, volume: 0 })
    }
  }

  /** A closed 1m candle from the stream. */
  candle(candle: CandleJson) {
    if (!this.loaded || candle.symbol !== this.symbol) return
    if (this.interval === "1m" && candle.interval === "1m") this.put(barOf(candle))
    else this.scheduleTail(1_000)
  }

  private scheduleTail(ms: number) {
    if (this.tailTimer !== undefined) return
    this.tailTimer = setTimeout(() => {
      this.tailTimer = undefined
      void this.refreshTail()
    }, ms)
  }

  /** The newest candles again, as the server has them now. */
  private async refreshTail() {
    if (!this.loaded || Date.now() - this.lastTail < 1_000) return
    this.lastTail = Date.now()
    const generation = this.generation
    const step = INTERVAL_MS[this.interval]
    const last = this.bars[this.bars.length - 1]
    const end = Math.floor(serverNow() / step) * step + step
    const start = last === undefined ? end - HISTORY[this.interval] * step : Math.min(last.time * 1000 - step, end - 2 * step)
    try {
      const candles = await this.fetchCandles(start, end)
      if (generation !== this.generation) return
      for (const candle of candles) this.put(barOf(candle))
    } catch (e) {
      if (generation === this.generation) this.render(e instanceof Unavailable ? e.message : "could not refresh the candles")
    }
  }

  /** Puts `bar` in its place: replaces the bar of its time, or adds it. */
  private put(bar: Bar) {
    let at = this.bars.length - 1
    while (at >= 0 && this.bars[at]!.time > bar.time) at--
    const existing = at >= 0 && this.bars[at]!.time === bar.time
    if (existing) this.bars[at] = bar
    else this.bars.splice(at + 1, 0, bar)
    const newest = at + (existing ? 0 : 1) === this.bars.length - 1
    try {
      if (newest || existing) {
        this.candles.update(candleData(bar), !newest)
        this.volume.update(volumeData(bar), !newest)
      } else {
        throw new Error("an insertion")
      }
    } catch {
      this.candles.setData(this.bars.map(candleData))
      this.volume.setData(this.bars.map(volumeData))
    }
    this.render()
  }

  private render(message?: string) {
    if (message !== undefined) this.message = message
    else if (this.loaded) this.message = ""
    const last = this.bars[this.bars.length - 1]
    this.container.dataset["bars"] = String(this.bars.length)
    this.container.dataset["lastTime"] = last === undefined ? "" : new Date(last.time * 1000).toISOString()
    this.container.dataset["lastClose"] = last === undefined ? "" : String(last.close)
    if (this.loaded) this.container.dataset["state"] = this.bars.length === 0 ? "empty" : "ready"
    let text = this.message
    if (text === "" && this.loaded) {
      if (last === undefined) text = `no ${this.interval} candles for ${this.symbol} yet`
      else {
        const noVolume = this.bars.every((b) => b.volume === 0)
        text =
          `${formatCount(this.bars.length)} candles, newest ${formatTime(last.time * 1000)}` +
          (noVolume ? " · no volume: tick-derived candles carry prices only" : "")
      }
    }
    if (this.status.textContent !== text) this.status.textContent = text
  }
}
