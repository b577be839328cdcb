import type { Clock, TimerHandle } from '../time.js'

interface HeapItem { at: number, id: string, seq: number }

export interface TimerHeap {
  /** Run `id` at epoch ms `at`; replaces any earlier schedule of the same id. */
  schedule: (id: string, at: number) => void
  cancel: (id: string) => void
  /** When `id` is scheduled, if it is. */
  scheduledAt: (id: string) => number | undefined
  size: () => number
  close: () => void
}

/**
 * Many deadlines behind one clock timer. A binary min-heap keeps schedule and pop at O(log n), so 10,000
 * credentials cost one armed timer and no per-tick scan. Re-scheduling an id leaves its old heap item in
 * place and marks it dead by sequence number (lazy deletion); dead items are dropped when they surface.
 */
export function createTimerHeap ({ clock, onDue }: { clock: Clock, onDue: (id: string) => void }): TimerHeap {
  const heap: HeapItem[] = []
  const live = new Map<string, { seq: number, at: number }>()
  let seq = 0
  let armed: { handle: TimerHandle, at: number } | undefined
  let closed = false

  const less = (a: HeapItem, b: HeapItem): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq)
  const swap = (i: number, j: number): void => { const t = heap[i] as HeapItem; heap[i] = heap[j] as HeapItem; heap[j] = t }
  const push = (item: HeapItem): void => {
    heap.push(item)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!less(heap[i] as HeapItem, heap[parent] as HeapItem)) break
      swap(i, parent)
      i = parent
    }
  }
  const pop = (): HeapItem | undefined => {
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && less(heap[l] as HeapItem, heap[m] as HeapItem)) m = l
        if (r < heap.length && less(heap[r] as HeapItem, heap[m] as HeapItem)) m = r
        if (m === i) break
        swap(i, m)
        i = m
      }
    }
    return top
  }
  const isLive = (item: HeapItem): boolean => live.get(item.id)?.seq === item.seq
  const dropDead = (): void => { while (heap.length > 0 && !isLive(heap[0] as HeapItem)) pop() }

  const arm = (): void => {
    if (closed) return
    dropDead()
    const top = heap[0]
    if (top === undefined) {
      if (armed !== undefined) { clock.clearTimer(armed.handle); armed = undefined }
      return
    }
    if (armed !== undefined && armed.at === top.at) return
    if (armed !== undefined) clock.clearTimer(armed.handle)
    armed = { at: top.at, handle: clock.setTimer(fire, top.at - clock.now()) }
  }

  function fire (): void {
    armed = undefined
    const now = clock.now()
    const due: string[] = []
    dropDead()
    while (heap.length > 0 && (heap[0] as HeapItem).at <= now) {
      const item = pop() as HeapItem
      if (isLive(item)) { live.delete(item.id); due.push(item.id) }
      dropDead()
    }
    arm()
    for (const id of due) onDue(id)
  }

  return {
    schedule (id, at) {
      seq += 1
      live.set(id, { seq, at })
      push({ at, id, seq })
      // Keep the heap from filling with dead items when ids are re-scheduled often.
      if (heap.length > 64 && heap.length > 2 * live.size) {
        const items = heap.filter(isLive)
        heap.length = 0
        for (const item of items) push(item)
      }
      arm()
    },
    cancel (id) {
      live.delete(id)
      arm()
    },
    scheduledAt: id => live.get(id)?.at,
    size: () => live.size,
    close () {
      closed = true
      if (armed !== undefined) clock.clearTimer(armed.handle)
      armed = undefined
      live.clear()
      heap.length = 0
    }
  }
}
