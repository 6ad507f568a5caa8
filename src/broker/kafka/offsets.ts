/**
 * Offset bookkeeping of one topic for one member of a consumer group: which offset of each partition
 * may be committed. Pure: no I/O, no Effect, no kafkajs. A synchronous state machine that the
 * subscription feeds (hand-outs, dead letters, acknowledgements, rebalances) and asks for commit targets.
 *
 * The committable offset of a partition (the next one to read) is the first offset handed to the
 * subscriber and not yet acknowledged or, with none outstanding, one past the highest offset handed
 * out or dead-lettered. So it never passes a message that is neither acknowledged nor in the DLQ,
 * whatever order acknowledgements come in. Offsets are JS numbers: exact below 2^53.
 *
 * Rebalances: a partition that stays with this member keeps its book (kafkajs fetches again from the
 * committed offset; what it hands out again is already tracked). A revoked partition's book is
 * dropped, and a later assignment starts a new one under a new epoch: receipts carry the epoch, and
 * acknowledgements from an older one are not committed, since the partition's offset may have moved
 * on under another member.
 */

/** Where a delivered message sits: what an acknowledgement refers to. */
export interface Position {
  readonly partition: number
  readonly offset: number
  readonly epoch: number
}

/** An offset to commit: the next one to read in `partition`. */
export type CommitTarget = Position

export interface Acknowledged {
  /** The partitions whose committable offset moved past what was committed. */
  readonly targets: ReadonlyArray<CommitTarget>
  /** Partitions acknowledged under an epoch that is over (revoked, or reassigned since). */
  readonly moved: ReadonlyArray<number>
}

/** Epoch of a partition this member does not hold. */
export const NOT_ASSIGNED = -1

interface PartitionBook {
  readonly epoch: number
  /** Offsets handed out, ascending; those from `head` on are outstanding or acknowledged ahead. */
  pending: Array<number>
  head: number
  /** Acknowledged while an earlier offset is still outstanding. */
  readonly ackedAhead: Set<number>
  /** One past the highest offset handed out or dead-lettered; -1 before the first. */
  next: number
  /** What this member last committed in the current generation; -1 for nothing yet. */
  committed: number
}

const COMPACT_AT = 1_024

const indexOf = (sorted: ReadonlyArray<number>, from: number, offset: number): number => {
  let lo = from
  let hi = sorted.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const at = sorted[mid]!
    if (at === offset) return mid
    if (at < offset) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

const settle = (b: PartitionBook, offset: number): void => {
  if (b.head < b.pending.length && b.pending[b.head] === offset) {
    b.head++
    while (b.head < b.pending.length && b.ackedAhead.delete(b.pending[b.head]!)) b.head++
    if (b.head >= COMPACT_AT && b.head * 2 >= b.pending.length) {
      b.pending = b.pending.slice(b.head)
      b.head = 0
    }
  } else if (indexOf(b.pending, b.head + 1, offset) >= 0) {
    b.ackedAhead.add(offset)
  }
  // else: already settled (a second copy of a redelivered message), nothing to do
}

const committable = (b: PartitionBook): number =>
  b.head < b.pending.length ? b.pending[b.head]! : b.next

export class OffsetBook {
  private readonly books = new Map<number, PartitionBook>()
  private nextEpoch = 0

  /** The result of a rebalance: the partitions this member holds in the new generation. */
  assign(partitions: Iterable<number>): void {
    const held = new Set(partitions)
    for (const p of this.books.keys()) if (!held.has(p)) this.books.delete(p)
    for (const p of held) {
      const kept = this.books.get(p)
      if (kept === undefined) {
        this.books.set(p, { epoch: this.nextEpoch++, pending: [], head: 0, ackedAhead: new Set(), next: -1, committed: -1 })
      } else {
        kept.committed = -1 // a new generation: commits start over
      }
    }
  }

  /** Forgets every partition: a new consumer session joins as a new member. */
  revokeAll(): void {
    this.books.clear()
  }

  /** The epoch to stamp on receipts of `partition`, or NOT_ASSIGNED. */
  epochOf(partition: number): number {
    return this.books.get(partition)?.epoch ?? NOT_ASSIGNED
  }

  private bookOf(partition: number, epoch: number): PartitionBook | undefined {
    const b = this.books.get(partition)
    return b !== undefined && b.epoch === epoch ? b : undefined
  }

  /** Offsets (ascending) about to be handed to the subscriber; offsets seen before are already tracked. */
  handOut(partition: number, epoch: number, offsets: ReadonlyArray<number>): void {
    const b = this.bookOf(partition, epoch)
    if (b === undefined) return
    for (const offset of offsets) {
      if (offset < b.next) continue
      b.pending.push(offset)
      b.next = offset + 1
    }
  }

  /** Messages now in the DLQ (call only once they are): done without an acknowledgement. */
  deadLettered(partition: number, epoch: number, offsets: ReadonlyArray<number>): ReadonlyArray<CommitTarget> {
    const b = this.bookOf(partition, epoch)
    if (b === undefined) return []
    for (const offset of offsets) if (offset >= b.next) b.next = offset + 1
    return this.targetsOf([partition])
  }

  /** Stored deliveries; returns what may be committed now. */
  acknowledge(positions: Iterable<Position>): Acknowledged {
    const touched = new Set<number>()
    const moved = new Set<number>()
    for (const { partition, offset, epoch } of positions) {
      const b = this.bookOf(partition, epoch)
      if (b === undefined) {
        moved.add(partition)
        continue
      }
      settle(b, offset)
      touched.add(partition)
    }
    return { targets: this.targetsOf(touched), moved: [...moved] }
  }

  /** Commits that succeeded. */
  committed(targets: ReadonlyArray<CommitTarget>): void {
    for (const t of targets) {
      const b = this.bookOf(t.partition, t.epoch)
      if (b !== undefined && t.offset > b.committed) b.committed = t.offset
    }
  }

  /** The offset that may be committed in `partition` now (undefined: nothing handed out yet, or not held). */
  committableOf(partition: number): number | undefined {
    const b = this.books.get(partition)
    if (b === undefined) return undefined
    const at = committable(b)
    return at < 0 ? undefined : at
  }

  private targetsOf(partitions: Iterable<number>): ReadonlyArray<CommitTarget> {
    const targets: Array<CommitTarget> = []
    for (const partition of partitions) {
      const b = this.books.get(partition)!
      const offset = committable(b)
      if (offset > b.committed) targets.push({ partition, offset, epoch: b.epoch })
    }
    return targets
  }
}
