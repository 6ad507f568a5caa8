import { FastCheck as fc } from "effect"
import { assert, describe, it } from "vitest"
import { NOT_ASSIGNED, OffsetBook, type Position } from "../src/broker/kafka/offsets.js"

const at = (epoch: number, partition: number, ...offsets: Array<number>): Array<Position> =>
  offsets.map((offset) => ({ partition, offset, epoch }))

/** A book holding `partitions`, with the epoch of each. */
const bookWith = (...partitions: Array<number>) => {
  const book = new OffsetBook()
  book.assign(partitions)
  return { book, epoch: (p: number) => book.epochOf(p) }
}

/** Acknowledges, records the commits as made, and returns them as [partition, offset]. */
const targetOf = (book: OffsetBook, positions: Array<Position>) => {
  const { targets } = book.acknowledge(positions)
  book.committed(targets)
  return targets.map((t) => [t.partition, t.offset])
}

describe("OffsetBook: what may be committed", () => {
  it("commits one past the last acknowledged offset when acknowledgements come in order", () => {
    const { book, epoch } = bookWith(0)
    book.handOut(0, epoch(0), [0, 1, 2, 3])
    assert.deepStrictEqual(targetOf(book, at(epoch(0), 0, 0, 1)), [[0, 2]])
    assert.deepStrictEqual(targetOf(book, at(epoch(0), 0, 2, 3)), [[0, 4]])
  })

  it("out-of-order acknowledgements: never past the first unacknowledged offset", () => {
    const { book, epoch } = bookWith(0)
    book.handOut(0, epoch(0), [10, 11, 12, 13, 14])
    book.committed(book.acknowledge(at(epoch(0), 0, 13, 14, 12)).targets)
    assert.strictEqual(book.committableOf(0), 10)
    assert.deepStrictEqual(targetOf(book, at(epoch(0), 0, 11)), [])
    assert.strictEqual(book.committableOf(0), 10)
    // 10 was the only gap: everything up to 14 is acknowledged now
    assert.deepStrictEqual(targetOf(book, at(epoch(0), 0, 10)), [[0, 15]])
  })

  it("gaps in the offsets (compaction, markers) do not hold commits back", () => {
    const { book, epoch } = bookWith(0)
    book.handOut(0, epoch(0), [3, 7, 20])
    assert.deepStrictEqual(targetOf(book, at(epoch(0), 0, 3)), [[0, 7]])
    assert.deepStrictEqual(targetOf(book, at(epoch(0), 0, 20, 7)), [[0, 21]])
  })

  it("a dead-lettered message between valid ones is passed only once everything before it is acknowledged", () => {
    const { book, epoch } = bookWith(0)
    const e = epoch(0)
    book.handOut(0, e, [0, 1])
    assert.deepStrictEqual(book.deadLettered(0, e, [2, 3]), [{ partition: 0, offset: 0, epoch: e }])
    book.committed([{ partition: 0, offset: 0, epoch: e }])
    book.handOut(0, e, [4])
    assert.deepStrictEqual(targetOf(book, at(e, 0, 4)), [])
    assert.deepStrictEqual(targetOf(book, at(e, 0, 1)), [])
    assert.strictEqual(book.committableOf(0), 0)
    assert.deepStrictEqual(targetOf(book, at(e, 0, 0)), [[0, 5]])
  })

  it("a dead-lettered message at the end of what was fetched is committed at once when nothing is outstanding", () => {
    const { book, epoch } = bookWith(0)
    const e = epoch(0)
    book.handOut(0, e, [0])
    book.committed(book.acknowledge(at(e, 0, 0)).targets)
    assert.deepStrictEqual(book.deadLettered(0, e, [1]), [{ partition: 0, offset: 2, epoch: e }])
  })

  it("partitions are independent", () => {
    const { book, epoch } = bookWith(0, 1)
    book.handOut(0, epoch(0), [0, 1])
    book.handOut(1, epoch(1), [5, 6])
    const targets = targetOf(book, [...at(epoch(0), 0, 1), ...at(epoch(1), 1, 5)])
    assert.deepStrictEqual(targets, [[0, 0], [1, 6]])
  })

  it("a revoked partition is not committed: its acknowledgements are reported as moved", () => {
    const { book, epoch } = bookWith(0, 1)
    const old = epoch(1)
    book.handOut(1, old, [0, 1])
    book.assign([0])
    assert.strictEqual(book.epochOf(1), NOT_ASSIGNED)
    const result = book.acknowledge(at(old, 1, 0, 1))
    assert.deepStrictEqual(result.targets, [])
    assert.deepStrictEqual(result.moved, [1])
  })

  it("reassigned later, a partition starts over: deliveries from before cannot move its offset backwards", () => {
    const { book, epoch } = bookWith(0)
    const first = epoch(0)
    book.handOut(0, first, [0, 1, 2])
    book.assign([]) // revoked: another member commits up to 50 meanwhile
    book.assign([0])
    const second = epoch(0)
    assert.notStrictEqual(second, first)
    book.handOut(0, second, [50, 51])
    assert.deepStrictEqual(book.acknowledge(at(first, 0, 0, 1, 2)), { targets: [], moved: [0] })
    assert.deepStrictEqual(targetOf(book, at(second, 0, 50)), [[0, 51]])
    // a commit recorded under the old epoch does not count for the new one
    book.committed([{ partition: 0, offset: 99, epoch: first }])
    assert.deepStrictEqual(targetOf(book, at(second, 0, 51)), [[0, 52]])
  })

  it("kept across a rebalance: what kafkajs fetches again is already tracked, and the next commit is made again", () => {
    const { book, epoch } = bookWith(0, 1)
    const e = epoch(0)
    book.handOut(0, e, [0, 1, 2, 3])
    book.committed(book.acknowledge(at(e, 0, 0, 1)).targets) // committed 2
    book.assign([0]) // partition 1 leaves; 0 stays, and kafkajs fetches again from 2
    assert.strictEqual(book.epochOf(0), e)
    book.handOut(0, e, [2, 3, 4])
    assert.strictEqual(book.committableOf(0), 2)
    assert.deepStrictEqual(targetOf(book, at(e, 0, 2)), [[0, 3]]) // either copy of 2 counts
    assert.deepStrictEqual(targetOf(book, at(e, 0, 2)), []) // the second copy changes nothing
    assert.deepStrictEqual(targetOf(book, at(e, 0, 4, 3)), [[0, 5]])
  })

  it("a new session forgets everything: the old session's deliveries are delivered again, not committed", () => {
    const { book, epoch } = bookWith(0)
    const old = epoch(0)
    book.handOut(0, old, [0, 1])
    book.revokeAll()
    book.assign([0])
    assert.deepStrictEqual(book.acknowledge(at(old, 0, 0, 1)).moved, [0])
    assert.strictEqual(book.committableOf(0), undefined)
  })

  it("long runs stay correct across the internal compaction of outstanding offsets", () => {
    const { book, epoch } = bookWith(0)
    const e = epoch(0)
    const offsets = Array.from({ length: 5_000 }, (_, i) => i)
    book.handOut(0, e, offsets)
    book.acknowledge(at(e, 0, ...offsets.slice(0, 3_000)))
    assert.strictEqual(book.committableOf(0), 3_000)
    book.acknowledge(at(e, 0, ...offsets.slice(3_001)))
    assert.strictEqual(book.committableOf(0), 3_000)
    book.acknowledge(at(e, 0, 3_000))
    assert.strictEqual(book.committableOf(0), 5_000)
  })
})

/**
 * A simulated partition: a log of valid and poison messages, a subscriber that acknowledges in any order,
 * rebalances that keep, revoke (another member then consumes and commits) or reassign the partition, and
 * commits that may fail. Whatever happens, every commit leaves only acknowledged or dead-lettered messages
 * behind it and never moves the group's offset backwards; once everything is acknowledged, all is committable.
 */
type Step =
  | { readonly _tag: "fetch"; readonly n: number }
  | { readonly _tag: "ack"; readonly picks: ReadonlyArray<number> }
  | { readonly _tag: "keep" }
  | { readonly _tag: "revoke"; readonly otherConsumes: number }
  | { readonly _tag: "reassign" }
  | { readonly _tag: "newSession" }
  | { readonly _tag: "commitFails" }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ _tag: fc.constant("fetch" as const), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 6, arbitrary: fc.record({ _tag: fc.constant("ack" as const), picks: fc.array(fc.nat(), { maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "keep" as const }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("revoke" as const), otherConsumes: fc.nat({ max: 5 }) }) },
  { weight: 2, arbitrary: fc.constant({ _tag: "reassign" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "newSession" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "commitFails" as const }) }
)

const simulate = (poison: ReadonlyArray<boolean>, steps: ReadonlyArray<Step>) => {
  const length = poison.length
  const book = new OffsetBook()
  const done = new Set<number>() // stored (acknowledged by any member) or in the DLQ
  const inFlight: Array<Position> = [] // delivered to this member, not acknowledged yet
  let groupCommitted = 0
  let fetchAt = 0
  let assigned = true
  let failNextCommit = false
  book.assign([0])

  const commit = (targets: ReadonlyArray<Position>) => {
    for (const t of targets) {
      for (let o = 0; o < t.offset; o++) assert.isTrue(done.has(o), `commit ${t.offset} passes offset ${o}, not stored`)
      assert.isAtLeast(t.offset, groupCommitted, "the group's offset moved backwards")
      if (failNextCommit) {
        failNextCommit = false
        continue
      }
      groupCommitted = t.offset
      book.committed([t])
    }
  }
  const fetch = (n: number) => {
    const epoch = book.epochOf(0)
    const end = Math.min(length, fetchAt + n)
    while (fetchAt < end) {
      const good: Array<number> = []
      while (fetchAt < end && !poison[fetchAt]) good.push(fetchAt++)
      book.handOut(0, epoch, good)
      for (const offset of good) inFlight.push({ partition: 0, offset, epoch })
      const bad: Array<number> = []
      while (fetchAt < end && poison[fetchAt]) bad.push(fetchAt++)
      for (const offset of bad) done.add(offset)
      if (bad.length > 0) commit(book.deadLettered(0, epoch, bad))
    }
  }
  const ack = (positions: ReadonlyArray<Position>) => {
    for (const p of positions) done.add(p.offset)
    commit(book.acknowledge(positions).targets)
  }

  for (const s of steps) {
    switch (s._tag) {
      case "fetch":
        if (assigned) fetch(s.n)
        break
      case "ack": {
        const picked = [...new Set(s.picks.filter((i) => i < inFlight.length))].sort((a, b) => b - a)
        ack(picked.map((i) => inFlight.splice(i, 1)[0]!).reverse())
        break
      }
      case "keep":
        if (assigned) {
          book.assign([0])
          fetchAt = groupCommitted // kafkajs fetches again from the committed offset
        }
        break
      case "revoke": {
        book.assign([])
        assigned = false
        // another member stores some of what follows the committed offset, and commits it
        const end = Math.min(length, groupCommitted + s.otherConsumes)
        for (let o = groupCommitted; o < end; o++) done.add(o)
        groupCommitted = end
        break
      }
      case "reassign":
        if (!assigned) {
          book.assign([0])
          assigned = true
          fetchAt = groupCommitted
        }
        break
      case "newSession":
        book.revokeAll()
        book.assign([0])
        assigned = true
        fetchAt = groupCommitted
        break
      case "commitFails":
        failNextCommit = true
        break
    }
  }

  // The end: this member holds the partition, fetches the rest and acknowledges everything it holds.
  if (!assigned) {
    book.assign([0])
    fetchAt = groupCommitted
  }
  failNextCommit = false
  fetch(length)
  ack(inFlight.splice(0))
  // (a commit that failed is covered by a later one, or the messages are delivered again after a restart)
  const committable = Math.max(groupCommitted, book.committableOf(0) ?? 0)
  assert.strictEqual(committable, length, "not everything committable once everything was acknowledged")
}

describe("OffsetBook: a simulated partition", () => {
  it("commits never pass an unstored message nor go backwards; everything is committable in the end", () => {
    fc.assert(
      fc.property(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }).map((xs) => xs.map((x, i) => x && i % 3 === 0)),
        fc.array(step, { maxLength: 60 }),
        (poison, steps) => simulate(poison, steps)
      ),
      { numRuns: 2_000 }
    )
  })
})
