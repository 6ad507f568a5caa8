/**
 * One symbol's remembered instants (µs), ascending, in the window [start, end) of a typed array: events
 * mostly arrive in time order, so remembering one is an append and recognising one a binary search,
 * with no object or hash entry per event (8 bytes each).
 */
class Instants {
  private buf = new Float64Array(256)
  private start = 0
  private end = 0

  get size(): number {
    return this.end - this.start
  }

  /** The position of the first instant ≥ `x` in the window. */
  private lowerBound(x: number): number {
    let lo = this.start
    let hi = this.end
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.buf[mid]! < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  has(x: number): boolean {
    if (this.end === this.start || x > this.buf[this.end - 1]! || x < this.buf[this.start]!) return false
    return this.buf[this.lowerBound(x)] === x
  }

  /** Remembers `x`; false when it was already known. */
  add(x: number): boolean {
    if (this.end > this.start && x <= this.buf[this.end - 1]!) {
      const at = this.lowerBound(x)
      if (this.buf[at] === x) return false
      const shift = this.makeRoom()
      this.buf.copyWithin(at - shift + 1, at - shift, this.end)
      this.buf[at - shift] = x
      this.end++
      return true
    }
    this.makeRoom()
    this.buf[this.end++] = x
    return true
  }

  remove(x: number): void {
    if (!this.has(x)) return
    const at = this.lowerBound(x)
    this.buf.copyWithin(at, at + 1, this.end)
    this.end--
  }

  /** Forgets the `count` oldest instants. */
  dropOldest(count: number): void {
    this.start = Math.min(this.end, this.start + count)
  }

  /** Room for one more at the end: the window moved to the front, or a bigger array. Returns how far it moved. */
  private makeRoom(): number {
    if (this.end < this.buf.length) return 0
    const shift = this.start
    if (this.size * 2 <= this.buf.length) this.buf.copyWithin(0, this.start, this.end)
    else {
      const bigger = new Float64Array(this.buf.length * 2)
      bigger.set(this.buf.subarray(this.start, this.end))
      this.buf = bigger
    }
    this.end -= shift
    this.start = 0
    return shift
  }
}

/**
 * Event identities (symbol, instant in µs) of one day file: nothing to format or parse per event.
 * Bounded: past `maxEntries`, each symbol forgets its oldest quarter (amortised O(1) per event), so
 * recent identities, the ones replays bring back, are what stays. A symbol's name is kept once.
 */
export class Identities {
  private readonly bySymbol = new Map<string, Instants>()
  private total = 0

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.total
  }

  has(symbol: string, micros: number): boolean {
    return this.bySymbol.get(symbol)?.has(micros) === true
  }

  /** Remembers the identity; false when it was already known. */
  add(symbol: string, micros: number): boolean {
    let instants = this.bySymbol.get(symbol)
    if (instants === undefined) this.bySymbol.set(symbol, (instants = new Instants()))
    if (!instants.add(micros)) return false
    if (++this.total > this.maxEntries) this.forgetOldest()
    return true
  }

  /** Forgets one identity (of an append that failed). */
  remove(symbol: string, micros: number): void {
    const instants = this.bySymbol.get(symbol)
    if (instants === undefined || !instants.has(micros)) return
    instants.remove(micros)
    this.total--
    if (instants.size === 0) this.bySymbol.delete(symbol)
  }

  private forgetOldest() {
    for (const [symbol, instants] of this.bySymbol) {
      const drop = Math.ceil(instants.size / 4)
      instants.dropOldest(drop)
      this.total -= drop
      if (instants.size === 0) this.bySymbol.delete(symbol)
    }
  }
}
