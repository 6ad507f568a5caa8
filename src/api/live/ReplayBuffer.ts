/**
 * The live feed's events, shared by every client: a ring of the latest events, each held once as the
 * UTF-8 bytes of its finished SSE frame (`id:`, `event:`, `data:`, blank line) in one preallocated
 * buffer, numbered by consecutive ids. A client is a filter and a cursor (the last id it has been
 * given); it reads the frames after its cursor. Nothing is copied per client, so a client that falls
 * behind costs no memory: it only falls out of the ring. The frames live outside the JavaScript heap,
 * so holding 100,000 of them neither slows the garbage collector nor makes V8 grow its heap.
 */

export const Kinds = ["ticker", "trade", "candle"] as const
export type Kind = (typeof Kinds)[number]

/** What one client asked for; `key` names the filter, so clients asking the same share their answers. */
export interface Filter {
  /** Bit `i` set: kind `Kinds[i]` is wanted. */
  readonly kinds: number
  /** undefined: every symbol, including ones that appear later. */
  readonly symbols: ReadonlySet<string> | undefined
  readonly key: string
}

const ALL_KINDS = (1 << Kinds.length) - 1

export const makeFilter = (kinds: ReadonlyArray<Kind> | undefined, symbols: ReadonlyArray<string> | undefined): Filter => {
  const bits = kinds === undefined ? ALL_KINDS : kinds.reduce((b, k) => b | (1 << Kinds.indexOf(k)), 0)
  const set = symbols === undefined ? undefined : new Set(symbols)
  return { kinds: bits, symbols: set, key: `${bits}:${set === undefined ? "*" : [...set].sort().join(",")}` }
}

export class ReplayBuffer {
  /** Allocated at the first event, let go by `clear`: an idle feed holds nothing. */
  private bytes: Buffer | undefined
  /** Where each event's frame starts, counted in bytes ever written (its place: modulo maxBytes). */
  private readonly offsets: Float64Array
  private readonly lengths: Uint32Array
  private readonly kinds: Uint8Array
  private readonly symbols: Array<string | undefined>
  private readonly appendedAt: Float64Array
  private readonly picked: Uint32Array
  private end = 0
  /** The id the next event gets. */
  next: number
  /** The oldest id still held (`next` when empty); every id below it is gone or never existed here. */
  oldest: number
  /** Bumped by every change, so answers built from the ring can be kept until it changes. */
  version = 0

  constructor(
    /** At most this many events… */
    readonly capacity: number,
    /** …taking at most this many bytes… */
    readonly maxBytes: number,
    /** …appended at most this long ago. */
    readonly maxAgeMs: number,
    firstId: number,
    /** The most events one `take` returns. */
    readonly maxTake: number
  ) {
    this.offsets = new Float64Array(capacity)
    this.lengths = new Uint32Array(capacity)
    this.kinds = new Uint8Array(capacity)
    this.symbols = new Array<string | undefined>(capacity)
    this.appendedAt = new Float64Array(capacity)
    this.picked = new Uint32Array(maxTake)
    this.next = firstId
    this.oldest = firstId
  }

  get size() {
    return this.next - this.oldest
  }

  /** Appends an event of kind index `kind`; `json` is one line. */
  append(kind: number, symbol: string, json: string, nowMs: number): void {
    const frame = `id: ${this.next}\nevent: ${Kinds[kind]}\ndata: ${json}\n\n`
    const length = Buffer.byteLength(frame)
    if (length > this.maxBytes) throw new Error(`an event of ${length} bytes does not fit the replay buffer`)
    // a frame never wraps: one that does not fit before the end goes to the start
    let at = this.end
    if ((at % this.maxBytes) + length > this.maxBytes) at += this.maxBytes - (at % this.maxBytes)
    while (this.size === this.capacity || (this.size > 0 && this.offsets[this.oldest % this.capacity]! < at + length - this.maxBytes)) {
      this.dropOldest()
    }
    this.bytes ??= Buffer.allocUnsafeSlow(this.maxBytes)
    this.bytes.write(frame, at % this.maxBytes, length, "utf8")
    const slot = this.next % this.capacity
    this.offsets[slot] = at
    this.lengths[slot] = length
    this.kinds[slot] = 1 << kind
    this.symbols[slot] = symbol
    this.appendedAt[slot] = nowMs
    this.end = at + length
    this.next++
    this.version++
  }

  /** Lets go of the events appended more than `maxAgeMs` before `nowMs`. */
  expire(nowMs: number): void {
    const before = this.oldest
    while (this.size > 0 && this.appendedAt[this.oldest % this.capacity]! <= nowMs - this.maxAgeMs) this.dropOldest()
    if (this.oldest !== before) this.version++
  }

  /** Lets go of every event and of the memory; ids go on from where they were. */
  clear(): void {
    while (this.size > 0) this.dropOldest()
    this.bytes = undefined
    this.end = 0
    this.version++
  }

  private dropOldest() {
    this.symbols[this.oldest % this.capacity] = undefined
    this.oldest++
  }

  /**
   * The frames of up to `maxTake` events after `cursor` that `filter` takes, copied into one buffer of
   * their own (a socket may hold it long after the ring has moved on), undefined when none; and the
   * cursor after them (the last id looked at). A cursor below the ring starts at its oldest event.
   */
  take(filter: Filter, cursor: number): { readonly bytes: Buffer | undefined; readonly cursor: number } {
    let id = Math.max(cursor + 1, this.oldest)
    let count = 0
    let total = 0
    const everySymbol = filter.symbols === undefined
    for (; id < this.next && count < this.maxTake; id++) {
      const slot = id % this.capacity
      if ((this.kinds[slot]! & filter.kinds) === 0) continue
      if (!everySymbol && !filter.symbols!.has(this.symbols[slot]!)) continue
      this.picked[count++] = slot
      total += this.lengths[slot]!
    }
    if (count === 0 || this.bytes === undefined) return { bytes: undefined, cursor: id - 1 }
    const out = Buffer.allocUnsafeSlow(total)
    let written = 0
    for (let i = 0; i < count; i++) {
      const slot = this.picked[i]!
      const from = this.offsets[slot]! % this.maxBytes
      written += this.bytes.copy(out, written, from, from + this.lengths[slot]!)
    }
    return { bytes: out, cursor: id - 1 }
  }
}
