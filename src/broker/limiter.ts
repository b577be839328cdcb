/** Runs at most `concurrency` tasks at once; the rest wait in arrival order. */
export function createLimiter (concurrency: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0
  const queue: Array<() => void> = []
  return async <T>(task: () => Promise<T>): Promise<T> => {
    // A waiter is handed the slot of the task that finishes, so `active` never exceeds the limit.
    if (active >= concurrency) await new Promise<void>(resolve => queue.push(resolve))
    else active += 1
    try {
      return await task()
    } finally {
      const waiter = queue.shift()
      if (waiter !== undefined) waiter()
      else active -= 1
    }
  }
}
