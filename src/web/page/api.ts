/**
 * Calls to the API from the page: the API key (kept in localStorage, sent as x-api-key on every call),
 * what a 401 means for the page, and the server's clock (from the Date headers) so freshness is
 * measured against the server's time, not a skewed browser clock.
 */

const KEY_STORAGE = "crypto-streaming-platform.api-key"

const storage = (): Storage | undefined => {
  try {
    return window.localStorage
  } catch {
    return undefined // storage disabled: the key lives as long as the page
  }
}

let memoryKey = ""

export const apiKey = {
  get: (): string => storage()?.getItem(KEY_STORAGE) ?? memoryKey,
  set: (key: string): void => {
    memoryKey = key
    if (key === "") storage()?.removeItem(KEY_STORAGE)
    else storage()?.setItem(KEY_STORAGE, key)
  }
}

type Listener = (refusedKey: string) => void
const unauthorizedListeners: Array<Listener> = []
/** Called with the key that was refused ("" when none was sent) whenever the API answers 401. */
export const onUnauthorized = (listener: Listener) => unauthorizedListeners.push(listener)

/** Tells the listeners the API refused the current key (or wants one). */
export const reportUnauthorized = () => {
  const refused = apiKey.get()
  for (const listener of unauthorizedListeners) listener(refused)
}

/** The headers every call sends. */
export const authHeaders = (): Record<string, string> => {
  const key = apiKey.get()
  return key === "" ? {} : { "x-api-key": key }
}

// --- the server's clock ------------------------------------------------------------------------------

/**
 * Bounds on (server time - browser time), narrowed by each answer: its Date header (whole seconds) was
 * written between the request's start and its answer's arrival.
 */
let offsetLow = -Infinity
let offsetHigh = Infinity

const observeDate = (date: string | null, sentAt: number, receivedAt: number) => {
  if (date === null) return
  const server = Date.parse(date)
  if (Number.isNaN(server)) return
  const low = server - receivedAt
  const high = server + 1050 - sentAt // (Node refreshes its Date at each second, a timer a few ms late)
  if (low > offsetHigh || high < offsetLow) {
    // a clock moved: start again from this answer
    offsetLow = low
    offsetHigh = high
  } else {
    offsetLow = Math.max(offsetLow, low)
    offsetHigh = Math.min(offsetHigh, high)
  }
}

/** The server's current time in ms, as well as the answers so far tell it (the browser's before any). */
export const serverNow = (): number => {
  if (!Number.isFinite(offsetLow) || !Number.isFinite(offsetHigh)) return Date.now()
  return Date.now() + (offsetLow + offsetHigh) / 2
}

// --- calls -------------------------------------------------------------------------------------------

export interface Reply<A> {
  readonly status: number
  /** The parsed JSON body (undefined when it is not JSON). */
  readonly body: A | undefined
  readonly headers: Headers
}

export class NetworkError extends Error {}

/** GET `path` as JSON with the key; a 401 also tells the listeners. Fails only when nothing answers. */
export const getJson = async <A>(path: string, signal?: AbortSignal): Promise<Reply<A>> => {
  const sentAt = Date.now()
  let response: Response
  try {
    response = await fetch(path, { headers: { accept: "application/json", ...authHeaders() }, cache: "no-store", ...(signal ? { signal } : {}) })
  } catch (e) {
    if (signal?.aborted) throw e
    throw new NetworkError(`GET ${path}: ${String(e)}`)
  }
  observeDate(response.headers.get("date"), sentAt, Date.now())
  if (response.status === 401) reportUnauthorized()
  let body: A | undefined
  try {
    body = (await response.json()) as A
  } catch {
    body = undefined
  }
  return { status: response.status, body, headers: response.headers }
}

/**
 * Runs `promise` in the background: once `signal` has aborted (a new session, a new key) its failure
 * is expected and dropped; any other failure is a bug, reported on the console.
 */
export const background = (promise: Promise<unknown>, signal?: AbortSignal): void => {
  promise.catch((e: unknown) => {
    if (signal?.aborted !== true) console.error("dashboard:", e)
  })
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener("abort", done)
      resolve()
    }
    signal?.addEventListener("abort", done)
  })
