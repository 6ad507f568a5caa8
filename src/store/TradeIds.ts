/**
 * One symbol's ids as sorted, disjoint, non-adjacent ranges [from[i], to[i]]. Aggregate trade ids are
 * consecutive and mostly arrive in increasing order, so a day of millions of trades is a handful of
 * ranges, and taking the next id only moves the last range's end.
 */
class IdRanges {
  private readonly from: Array<number> = []
  private readonly to: Array<number> = []

  get count(): number {
    return this.from.length
  }

  /** The index of the last range starting at or below `id`, or -1. */
  private find(id: number): number {
    let lo = 0
    let hi = this.from.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.from[mid]! <= id) lo = mid + 1
      else hi = mid
    }
    return lo - 1
  }

  has(id: number): boolean {
    const i = this.find(id)
    return i >= 0 && id <= this.to[i]!
  }

  /** Remembers `id`; false when it was already known. */
  add(id: number): boolean {
    const n = this.from.length
    const last = n - 1
    if (n === 0 || id > this.to[last]! + 1) {
      this.from.push(id)
      this.to.push(id)
      return true
    }
    if (id === this.to[last]! + 1) {
      this.to[last] = id
      return true
    }
    const i = this.find(id)
    if (i >= 0 && id <= this.to[i]!) return false
    const joinsPrevious = i >= 0 && this.to[i] === id - 1
    const joinsNext = i + 1 < n && this.from[i + 1] === id + 1
    if (joinsPrevious && joinsNext) {
      this.to[i] = this.to[i + 1]!
      this.from.splice(i + 1, 1)
      this.to.splice(i + 1, 1)
    } else if (joinsPrevious) this.to[i] = id
    else if (joinsNext) this.from[i + 1] = id
    else {
      this.from.splice(i + 1, 0, id)
      this.to.splice(i + 1, 0, id)
    }
    return true
  }

  remove(id: number): void {
    const i = this.find(id)
    if (i < 0 || id > this.to[i]!) return
    const from = this.from[i]!
    const to = this.to[i]!
    if (from === to) {
      this.from.splice(i, 1)
      this.to.splice(i, 1)
    } else if (id === from) this.from[i] = id + 1
    else if (id === to) this.to[i] = id - 1
    else {
      this.to[i] = id - 1
      this.from.splice(i + 1, 0, id + 1)
      this.to.splice(i + 1, 0, to)
    }
  }

  /** Forgets the `count` ranges of the lowest ids. */
  dropLowest(count: number): void {
    this.from.splice(0, count)
    this.to.splice(0, count)
  }
}

/**
 * The (symbol, aggregate trade id) identities of one trades day file, as id ranges per symbol.
 * Bounded by ranges, not ids: past `maxRanges`, each symbol forgets the lowest quarter of its ranges
 * (never its newest), so ids far below the live ones, the least likely to come again, are what goes.
 * A symbol's name is kept once.
 */
export class TradeIds {
  private readonly bySymbol = new Map<string, IdRanges>()
  private total = 0

  constructor(private readonly maxRanges: number) {}

  /** Ranges held, over all symbols. */
  get ranges(): number {
    return this.total
  }

  has(symbol: string, id: number): boolean {
    return this.bySymbol.get(symbol)?.has(id) === true
  }

  /** Remembers the identity; false when it was already known. */
  add(symbol: string, id: number): boolean {
    let ranges = this.bySymbol.get(symbol)
    if (ranges === undefined) this.bySymbol.set(symbol, (ranges = new IdRanges()))
    const before = ranges.count
    if (!ranges.add(id)) return false
    this.total += ranges.count - before
    if (this.total > this.maxRanges) this.forgetLowest()
    return true
  }

  /** Forgets one identity (of an append that failed). */
  remove(symbol: string, id: number): void {
    const ranges = this.bySymbol.get(symbol)
    if (ranges === undefined) return
    const before = ranges.count
    ranges.remove(id)
    this.total += ranges.count - before
    if (ranges.count === 0) this.bySymbol.delete(symbol)
  }

  private forgetLowest() {
    for (const ranges of this.bySymbol.values()) {
      // The range of the newest ids stays: that is where live trades and redeliveries land.
      const drop = Math.min(Math.ceil(ranges.count / 4), ranges.count - 1)
      ranges.dropLowest(drop)
      this.total -= drop
    }
  }
}
