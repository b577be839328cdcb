/**
 * The fixed-rate load of the throughput bench, run as its own process (pinned to the load core) so it never
 * shares an event loop or a core with the server it measures.
 *
 * An open loop: requests are due at fixed times (rate per second, spread evenly; sent at each millisecond
 * tick for everything due by then) whatever the server does. Each latency runs from the tick that found the
 * request due to the end of its answer: a request due while every connection is busy waits for the first
 * one free, and that wait is the server's (coordinated omission); how late the generator's own timer fired
 * is not.
 *
 * Why not autocannon's `overallRate` (the first version of this file): it gives each connection a quota per
 * second and lets it send back to back until the quota is used, so every second begins with all connections
 * running flat out. Its latencies were those of a saturated server for the first part of every second, and
 * they grew with the server's CPU per request times the number of connections. wrk2, the usual open-loop
 * tool, is not packaged here.
 *
 * Plain sockets with one prepared request and a minimal answer reader (status line, Content-Length), so the
 * generator's own cost per request stays small and alike for every target.
 *
 * argv: url, authorization header value, rate (req/s), duration (s), connections. Prints one JSON line.
 */
import { connect, type Socket } from 'node:net'

const [url, authorization, rateText, durationText, connectionsText] = process.argv.slice(2)
const target = new URL(url as string)
const rate = Number(rateText)
const durationMs = Number(durationText) * 1000
const connections = Number(connectionsText)
const request = Buffer.from(`GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: ${authorization as string}\r\n\r\n`, 'latin1')

interface Connection { socket: Socket, dueAt: number, buffered: Buffer, busy: boolean }

const latencies: number[] = []
let non2xx = 0
let errors = 0
const waiting: number[] = []
const idle: Connection[] = []

function send (connection: Connection, dueAt: number): void {
  connection.busy = true
  connection.dueAt = dueAt
  connection.socket.write(request)
}

/** One answer read whole (headers and Content-Length bytes of body), or undefined while it is incomplete. */
function answerIn (buffered: Buffer): { status: number, length: number } | undefined {
  const headerEnd = buffered.indexOf('\r\n\r\n')
  if (headerEnd < 0) return undefined
  const head = buffered.toString('latin1', 0, headerEnd)
  const contentLength = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
  const length = headerEnd + 4 + contentLength
  return buffered.length < length ? undefined : { status: Number(head.slice(9, 12)), length }
}

function open (): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.hostname, port: Number(target.port), noDelay: true })
    const connection: Connection = { socket, dueAt: 0, buffered: Buffer.alloc(0), busy: false }
    socket.once('connect', () => { resolve(connection) })
    socket.once('error', reject)
    socket.on('data', (chunk: Buffer) => {
      connection.buffered = connection.buffered.length === 0 ? chunk : Buffer.concat([connection.buffered, chunk])
      const answer = answerIn(connection.buffered)
      if (answer === undefined) return
      connection.buffered = connection.buffered.subarray(answer.length)
      if (answer.status >= 200 && answer.status < 300) latencies.push(performance.now() - connection.dueAt)
      else non2xx++
      connection.busy = false
      const next = waiting.shift()
      if (next !== undefined) send(connection, next)
      else idle.push(connection)
    })
  })
}

const pool = await Promise.all(Array.from({ length: connections }, open))
for (const connection of pool) {
  connection.socket.on('error', () => { errors++ })
  idle.push(connection)
}

const startedAt = performance.now()
let sent = 0
const total = Math.floor(rate * durationMs / 1000)
await new Promise<void>(resolve => {
  const tick = (): void => {
    const now = performance.now()
    const due = Math.min(total, Math.floor((now - startedAt) * rate / 1000))
    for (; sent < due; sent++) {
      const connection = idle.pop()
      if (connection === undefined) waiting.push(now)
      else send(connection, now)
    }
    if (sent >= total) { resolve(); return }
    setTimeout(tick, 1)
  }
  tick()
})
// The last answers: at most a second more.
const until = performance.now() + 1000
while (pool.some(connection => connection.busy) && performance.now() < until) await new Promise(resolve => setTimeout(resolve, 5))
for (const connection of pool) connection.socket.destroy()

const sorted = Float64Array.from(latencies).sort()
const at = (p: number): number => sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number
console.log(JSON.stringify({ requests: sorted.length, non2xx, errors: errors + (total - sorted.length - non2xx), p50Ms: Number(at(0.5).toFixed(3)), p99Ms: Number(at(0.99).toFixed(3)) }))
