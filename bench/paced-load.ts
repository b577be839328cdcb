/**
 * The fixed-rate load of the throughput bench, run as its own process (pinned to the load core) so it never
 * shares an event loop or a core with the server it measures. autocannon with `overallRate`: each of the
 * connections sends when the rate allows, so at a rate far below saturation it is an open loop in effect
 * (wrk2, the usual tool for this, is not packaged here). Latencies come from each response's own time
 * (sub-millisecond), not autocannon's 1 ms histogram.
 *
 * argv: url, authorization header value, rate (req/s), duration (s), connections. Prints one JSON line.
 */
import autocannon from 'autocannon'

const [url, authorization, rate, duration, connections] = process.argv.slice(2)
const latencies: number[] = []
const result = await new Promise<autocannon.Result>((resolve, reject) => {
  const instance = autocannon({
    url: url as string,
    headers: { authorization: authorization as string },
    connections: Number(connections),
    duration: Number(duration),
    overallRate: Number(rate)
  }, (err: unknown, finished: autocannon.Result) => { if (err !== null && err !== undefined) reject(err as Error); else resolve(finished) })
  instance.on('response', (_client, statusCode, _bytes, responseTime) => { if (statusCode === 200) latencies.push(responseTime) })
})
const sorted = Float64Array.from(latencies).sort()
const at = (p: number): number => sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number
console.log(JSON.stringify({ requests: sorted.length, non2xx: result.non2xx, errors: result.errors, p50Ms: Number(at(0.5).toFixed(3)), p99Ms: Number(at(0.99).toFixed(3)) }))
