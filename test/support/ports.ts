import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/**
 * Ports are drawn below the kernel's ephemeral range, not from it: a port the kernel hands out for
 * `listen(0)` is also one it may pick as the source port of any outgoing connection (a test's Redis client,
 * a fetch) in the moment between this check and the server that binds it (redis-server, a broker process),
 * which then fails with "Address already in use". Linux's range is in /proc; elsewhere (macOS: 49152–65535)
 * the range below is outside it as well.
 */
function ephemeralStart (): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    return Number.isInteger(start) && start > 20_000 ? start : 32_768
  } catch {
    return 32_768
  }
}

const lowest = 20_000
const highest = ephemeralStart() - 1
/** Ports this process has handed out: never twice, as a caller may not have bound the first one yet. */
const handedOut = new Set<number>()

async function bindable (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const server = createServer()
    server.unref()
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/** A TCP port that was free on loopback a moment ago, outside the range the kernel picks source ports from. */
export async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = lowest + Math.floor(Math.random() * (highest - lowest + 1))
    if (handedOut.has(port)) continue
    if (await bindable(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error(`no free loopback port between ${lowest} and ${highest} after 200 tries`)
}
