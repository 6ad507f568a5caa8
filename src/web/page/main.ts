import { apiKey, background, getJson, NetworkError, onUnauthorized, sleep } from "./api.js"
import { CandleChart } from "./chart.js"
import { type GapTotals, refreshCoverage } from "./coverage.js"
import { byId, el, replaceChildren, setText } from "./dom.js"
import { type LiveHandlers, type LiveMode, startLive } from "./live.js"
import { type Interval, INTERVALS, parseInstant, type SymbolSummaryJson } from "./model.js"
import { refreshPipeline } from "./pipeline.js"
import { PriceTable } from "./prices.js"

/**
 * The dashboard page (served at / by src/web/Dashboard.ts, bundled by scripts/build.mjs): wires the
 * price table, the chart, the coverage strips and the pipeline panel to the API and its live events.
 * A "session" is one set of symbols and one API key: a new key (or new symbols) starts another.
 */

const HEALTH_EVERY_MS = 5_000
const COVERAGE_EVERY_MS = 60_000
const SYMBOLS_EVERY_MS = 60_000
/** A symbol's chart follows trade prices while its trades keep coming, ticker prices otherwise. */
const TRADES_LEAD_MS = 30_000

const pipelineBox = byId("pipeline")
const coverageBox = byId("coverage")
const modeBadge = byId("live-mode")
const overallBadge = byId("overall")
const keyPanel = byId("key-panel")
const keyForm = byId<HTMLFormElement>("key-form")
const keyInput = byId<HTMLInputElement>("api-key")
const keyMessage = byId("key-message")
const keyButton = byId<HTMLButtonElement>("key-button")
const symbolSelect = byId<HTMLSelectElement>("symbol")
const intervalButtons = [...byId("intervals").querySelectorAll<HTMLButtonElement>("button[data-interval]")]
const pricesNote = byId("prices-note")

const table = new PriceTable(byId<HTMLTableElement>("prices").tBodies[0]!, (symbol) => choose(symbol, current.interval))
const chart = new CandleChart(byId("chart"), byId("chart-status"))

const current = { symbols: [] as ReadonlyArray<string>, symbol: "", interval: "1m" as Interval }
let session = new AbortController()
let gaps: GapTotals | undefined
/** Per symbol: when (browser time) its last trade arrived. */
const tradesSeen = new Map<string, number>()

// --- symbol and interval ---------------------------------------------------------------------------

const fromHash = (): { symbol?: string; interval?: Interval } => {
  const [symbol, interval] = decodeURIComponent(location.hash.slice(1)).split("/")
  return {
    ...(symbol ? { symbol: symbol.toUpperCase() } : {}),
    ...(INTERVALS.includes(interval as Interval) ? { interval: interval as Interval } : {})
  }
}

const choose = (symbol: string, interval: Interval) => {
  if (symbol === current.symbol && interval === current.interval) return
  current.symbol = symbol
  current.interval = interval
  symbolSelect.value = symbol
  for (const button of intervalButtons) button.setAttribute("aria-pressed", String(button.dataset["interval"] === interval))
  table.select(symbol)
  history.replaceState(null, "", `#${symbol}/${interval}`)
  background(chart.show(symbol, interval))
}

symbolSelect.addEventListener("change", () => choose(symbolSelect.value, current.interval))
for (const button of intervalButtons) button.addEventListener("click", () => choose(current.symbol, button.dataset["interval"] as Interval))

// --- the API key -----------------------------------------------------------------------------------

const showKeyPanel = (message: string) => {
  setText(keyMessage, message)
  keyPanel.hidden = false
  keyButton.hidden = false
  if (document.activeElement !== keyInput) keyInput.focus()
}

onUnauthorized((refused) => {
  showKeyPanel(
    refused === ""
      ? "This server wants an API key (sent in the x-api-key header). It is kept in this browser only."
      : "The server refused the saved API key. Enter another one:"
  )
  setMode("key needed", "enter an API key")
})

keyForm.addEventListener("submit", (e) => {
  e.preventDefault()
  const key = keyInput.value.trim()
  if (key === "") return
  apiKey.set(key)
  keyInput.value = ""
  keyPanel.hidden = true
  background(startSession())
})
byId("key-forget").addEventListener("click", () => {
  apiKey.set("")
  keyInput.value = ""
  keyPanel.hidden = true
  background(startSession())
})
keyButton.addEventListener("click", () => {
  if (keyPanel.hidden) showKeyPanel(apiKey.get() === "" ? "No key saved." : "A key is saved in this browser. Enter another one, or forget it:")
  else keyPanel.hidden = true
})
keyButton.hidden = apiKey.get() === ""

// --- live state ------------------------------------------------------------------------------------

const setMode = (mode: LiveMode, detail: string) => {
  setText(modeBadge, mode === "stream" ? "live: stream" : mode === "polling" ? "live: polling" : mode)
  modeBadge.dataset["mode"] = mode
  modeBadge.title = detail
}

/** The symbols to show: the configured ones (/health) and those with data (/symbols). */
const loadSymbols = async (configured: ReadonlyArray<string>, signal: AbortSignal): Promise<ReadonlyArray<string>> => {
  const symbols = new Set(configured)
  try {
    const reply = await getJson<ReadonlyArray<SymbolSummaryJson>>("/symbols", signal)
    if (reply.status === 200 && Array.isArray(reply.body)) for (const s of reply.body) symbols.add(s.symbol)
  } catch (e) {
    if (!(e instanceof NetworkError) && !signal.aborted) throw e
  }
  return [...symbols].sort()
}

let configured: ReadonlyArray<string> = []

const startSession = async () => {
  session.abort()
  const controller = new AbortController()
  session = controller
  const { signal } = controller
  tradesSeen.clear()
  const symbols = await loadSymbols(configured, signal)
  if (signal.aborted) return
  current.symbols = symbols
  table.setSymbols(symbols)
  replaceChildren(symbolSelect, ...symbols.map((s) => el("option", { value: s }, s)))
  setText(pricesNote, symbols.length === 0 ? "No symbols yet." : "")
  if (symbols.length === 0) return
  const wanted = fromHash()
  const symbol = [wanted.symbol, current.symbol].find((s): s is string => s !== undefined && symbols.includes(s)) ?? symbols[0]!
  current.symbol = ""
  choose(symbol, wanted.interval ?? current.interval)
  const handlers: LiveHandlers = {
    ticker: (event) => {
      table.ticker(event)
      if (Date.now() - (tradesSeen.get(event.symbol) ?? 0) > TRADES_LEAD_MS) {
        chart.price(event.symbol, parseInstant(event.timestamp_utc), Number(event.lastPrice))
      }
    },
    trade: (trade) => {
      tradesSeen.set(trade.symbol, Date.now())
      table.trade(trade)
      chart.price(trade.symbol, parseInstant(trade.trade_time), Number(trade.price))
    },
    candle: (candle) => chart.candle(candle),
    mode: setMode
  }
  background(startLive(symbols, handlers, signal), signal)
  const watchCoverage = async () => {
    while (!signal.aborted) {
      gaps = (await refreshCoverage(coverageBox, symbols, signal)) ?? gaps
      await sleep(COVERAGE_EVERY_MS, signal)
    }
  }
  // new symbols (a configured one's first data, or another process's): a new session shows them
  const watchSymbols = async () => {
    while (!signal.aborted) {
      await sleep(SYMBOLS_EVERY_MS, signal)
      if (signal.aborted) return
      const now = await loadSymbols(configured, signal)
      if (!signal.aborted && now.join() !== symbols.join()) return background(startSession())
    }
  }
  background(watchCoverage(), signal)
  background(watchSymbols(), signal)
}

// --- the pipeline (public: runs whatever the key) ---------------------------------------------------

const watchHealth = async (first: () => void) => {
  let started = false
  for (;;) {
    const view = await refreshPipeline(pipelineBox, gaps, new AbortController().signal).catch(() => ({ status: "unreachable", symbols: [] }))
    setText(overallBadge, `health: ${view.status}`)
    overallBadge.dataset["status"] = view.status
    if (view.symbols.length > 0) configured = view.symbols
    if (!started) {
      started = true
      first()
    }
    await sleep(HEALTH_EVERY_MS)
  }
}

setInterval(() => table.tick(), 1_000)
window.addEventListener("hashchange", () => {
  const wanted = fromHash()
  if (wanted.symbol !== undefined && current.symbols.includes(wanted.symbol)) choose(wanted.symbol, wanted.interval ?? current.interval)
})
background(watchHealth(() => background(startSession())))
