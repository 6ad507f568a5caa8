import { getJson, NetworkError, serverNow } from "./api.js"
import type { GapTotals } from "./coverage.js"
import { el, replaceChildren } from "./dom.js"
import { formatAge, formatCount, parseInstant } from "./model.js"

/**
 * The pipeline panel, from GET /health (public: no key needed): source and producer, the stream's
 * connections, the broker, the store and its sinks, Binance's used weight and rate limit, and the
 * gaps found and repaired (from /coverage). Fields the page does not know (a newer server's) are
 * shown as they come, so nothing the server reports is hidden.
 */

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
type Obj = { readonly [key: string]: Json }

const isObj = (v: Json | undefined): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v)
const str = (v: Json | undefined): string | undefined => (typeof v === "string" ? v : undefined)
const num = (v: Json | undefined): number | undefined => (typeof v === "number" ? v : undefined)

/** Binance's request weight budget per minute (what x-mbx-used-weight-1m counts against). */
const BINANCE_WEIGHT_PER_MINUTE = 6000

const badge = (state: string) => el("span", { class: `state state-${state.replace(/[^a-z_]/gi, "")}` }, state)

const ago = (instant: string | undefined) => {
  if (instant === undefined) return "never"
  const at = parseInstant(instant)
  return Number.isNaN(at) ? instant : `${formatAge(serverNow() - at)} ago`
}

const plain = (v: Json): string => (typeof v === "string" ? v : JSON.stringify(v))

/** key: value rows of the fields `known` does not list. */
const extras = (component: Obj, known: ReadonlyArray<string>) =>
  Object.entries(component)
    .filter(([k, v]) => !known.includes(k) && v !== null && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => row(k.replace(/_/g, " "), plain(v)))

const row = (label: string, ...value: ReadonlyArray<Node | string>) => el("div", { class: "kv" }, el("span", { class: "k" }, label), el("span", { class: "v" }, ...value))

const card = (title: string, state: string | undefined, ...rows: ReadonlyArray<Node>) =>
  el("div", { class: "card", "data-component": title }, el("div", { class: "card-head" }, el("strong", {}, title), state === undefined ? "" : badge(state)), ...rows)

const producerCard = (p: Obj) => {
  const weight = num(p["used_weight_1m"])
  const limited = str(p["rate_limited_until"])
  const error = str(p["last_error"])
  const symbols = Array.isArray(p["symbols"]) ? (p["symbols"] as ReadonlyArray<Json>).length : undefined
  return card(
    "source / producer",
    str(p["state"]),
    row("symbols", symbols === undefined ? "?" : String(symbols)),
    row("last success", ago(str(p["last_success_at"]))),
    row("Binance used weight", weight === undefined ? "not reported" : `${formatCount(weight)} / ${formatCount(BINANCE_WEIGHT_PER_MINUTE)} per min`),
    row("rate limit", limited === undefined ? "none in force" : el("span", { class: "warn" }, `waiting until ${limited}`)),
    ...(error === undefined ? [] : [row("last error", el("span", { class: "warn" }, `${error} (${ago(str(p["last_error_at"]))})`))]),
    ...extras(p, ["state", "symbols", "last_success_at", "last_error", "last_error_at", "used_weight_1m", "rate_limited_until"])
  )
}

const streamCard = (s: Obj) => {
  const connections = Array.isArray(s["connections"]) ? (s["connections"] as ReadonlyArray<Json>).filter(isObj) : []
  const detail = str(s["detail"])
  const table =
    connections.length === 0
      ? el("div", { class: "note" }, str(s["state"]) === "not_running" ? "no WebSocket streams with this SOURCE" : "no connection")
      : el(
          "table",
          { class: "mini" },
          el("thead", {}, el("tr", {}, el("th", {}, "connection"), el("th", {}, "state"), el("th", { class: "num" }, "streams"), el("th", { class: "num" }, "last message"), el("th", { class: "num" }, "reconnects"))),
          el(
            "tbody",
            {},
            ...connections.map((c) => {
              const age = num(c["last_message_age_ms"])
              return el(
                "tr",
                { title: str(c["detail"]) ?? `connected since ${str(c["connected_since"]) ?? "-"}` },
                el("td", {}, str(c["name"]) ?? "?"),
                el("td", {}, badge(str(c["state"]) ?? "?")),
                el("td", { class: "num" }, String(num(c["streams"]) ?? "")),
                el("td", { class: "num" }, age === undefined ? "none yet" : `${formatAge(age)} ago`),
                el("td", { class: "num" }, String(num(c["reconnects"]) ?? ""))
              )
            })
          )
        )
  return card("stream", str(s["state"]), ...(detail === undefined ? [] : [row("detail", detail)]), table, ...extras(s, ["state", "detail", "connections"]))
}

const brokerCard = (b: Obj) =>
  card("broker", str(b["state"]), row("mode", str(b["mode"]) ?? "?"), ...(str(b["detail"]) === undefined ? [] : [row("detail", str(b["detail"])!)]), ...extras(b, ["state", "mode", "detail"]))

const storeCard = (s: Obj) => {
  const sinks = Array.isArray(s["sinks"]) ? (s["sinks"] as ReadonlyArray<Json>).filter(isObj) : []
  const age = num(s["newest_event_age_seconds"])
  return card(
    "store",
    str(s["state"]),
    row("newest event", age === undefined ? "none yet" : `${formatAge(age * 1000)} old`),
    ...(str(s["detail"]) === undefined ? [] : [row("detail", el("span", { class: "warn" }, str(s["detail"])!))]),
    el(
      "div",
      { class: "sinks" },
      ...(sinks.length === 0
        ? [el("span", { class: "note" }, "no sinks in this process")]
        : sinks.map((k) =>
            el("span", { class: "sink", title: str(k["detail"]) ?? `last write ${ago(str(k["last_success_at"]))}` }, str(k["name"]) ?? "?", " ", badge(str(k["state"]) ?? "?"))
          ))
    ),
    ...extras(s, ["state", "path", "detail", "since", "newest_event_at", "newest_event_age_seconds", "sinks"])
  )
}

const gapsCard = (gaps: GapTotals | undefined) =>
  card(
    "gaps (today)",
    gaps === undefined ? undefined : gaps.missing.ranges > 0 ? "repairing" : "up",
    ...(gaps === undefined
      ? [el("div", { class: "note" }, "no coverage yet")]
      : [
          row("waiting for repair", `${formatCount(gaps.missing.ids)} ids in ${gaps.missing.ranges} gap(s)`),
          row("repaired", `${formatCount(gaps.repaired.ids)} ids in ${gaps.repaired.ranges} range(s)`),
          row("unrepairable", `${formatCount(gaps.unrepairable.ids)} ids in ${gaps.unrepairable.ranges} range(s)`),
          row("over", `${gaps.symbols} symbol(s) with trades`)
        ])
  )

export interface HealthView {
  /** "ok", "down", or "unreachable". */
  readonly status: string
  readonly symbols: ReadonlyArray<string>
}

/** Reads /health and shows it in `container` with `gaps`; returns the overall status and configured symbols. */
export const refreshPipeline = async (container: HTMLElement, gaps: GapTotals | undefined, signal: AbortSignal): Promise<HealthView> => {
  let reply
  try {
    reply = await getJson<Json>("/health", signal)
  } catch (e) {
    if (!(e instanceof NetworkError)) throw e
    replaceChildren(container, el("div", { class: "note warn" }, "the server does not answer"), gapsCard(gaps))
    return { status: "unreachable", symbols: [] }
  }
  const body = reply.body
  const components = isObj(body) && isObj(body["components"]) ? body["components"] : undefined
  if (components === undefined || !isObj(body)) {
    replaceChildren(container, el("div", { class: "note warn" }, `GET /health answered ${reply.status}`), gapsCard(gaps))
    return { status: "down", symbols: [] }
  }
  const cards: Array<Node> = []
  const producer = components["producer"]
  if (isObj(producer)) cards.push(producerCard(producer))
  const stream = components["stream"]
  if (isObj(stream)) cards.push(streamCard(stream))
  const broker = components["broker"]
  if (isObj(broker)) cards.push(brokerCard(broker))
  const store = components["store"]
  if (isObj(store)) cards.push(storeCard(store))
  for (const [name, value] of Object.entries(components)) {
    if (!["producer", "stream", "broker", "store"].includes(name) && isObj(value)) cards.push(card(name, str(value["state"]), ...extras(value, ["state"])))
  }
  cards.push(gapsCard(gaps))
  replaceChildren(container, ...cards)
  const symbols = isObj(producer) && Array.isArray(producer["symbols"]) ? (producer["symbols"] as ReadonlyArray<Json>).filter((s): s is string => typeof s === "string") : []
  return { status: str(body["status"]) ?? "down", symbols }
}
