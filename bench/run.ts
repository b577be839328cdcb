/**
 * `npm run bench`: every benchmark in turn, each writing bench/results/<name>.json, then a summary.
 * Not part of `npm test`: benchmarks measure, they do not assert (shared machines are noisy).
 * Run one: `npm run bench -- amplification` (on Sentinel or Cluster: `amplification-sentinel`, `amplification-cluster`),
 * `npm run bench -- proxy` (proxied vs direct requests to one upstream).
 */
import { writeFileSync } from 'node:fs'
import { runAmplification } from './amplification.js'
import { runProxyBench } from './proxy.js'
import { runScaleComparison } from './scale.js'
import { runThroughput, throughputOptionsFromEnv } from './throughput.js'

const benches: Record<string, () => Promise<object>> = {
  // scale first: it reads this process's own memory, which the other benches' load generators would inflate.
  // Paced, then unpaced as the baseline (memory figures are the paced run's: it runs first).
  scale: async () => await runScaleComparison(),
  throughput: async () => await runThroughput(throughputOptionsFromEnv()),
  amplification: async () => await runAmplification(),
  proxy: async () => await runProxyBench()
}

/** Only when named: the amplification bench on a Sentinel group or Cluster it starts (redis-sentinel, redis-cli). */
const onRequest: Record<string, () => Promise<object>> = {
  'amplification-sentinel': async () => await runAmplification({ topology: 'sentinel' }),
  'amplification-cluster': async () => await runAmplification({ topology: 'cluster' })
}

const selected = process.argv.slice(2).filter(arg => !arg.startsWith('-'))
const names = selected.length > 0 ? selected : Object.keys(benches)
const summary: Record<string, object> = {}
for (const name of names) {
  const bench = benches[name] ?? onRequest[name]
  if (bench === undefined) throw new Error(`unknown bench "${name}"; known: ${[...Object.keys(benches), ...Object.keys(onRequest)].join(', ')}`)
  console.log(`bench ${name}: running`)
  const result = await bench()
  writeFileSync(new URL(`results/${name}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  summary[name] = result
  console.log(JSON.stringify(result, null, 2))
}
writeFileSync(new URL('results/summary.json', import.meta.url), `${JSON.stringify({ at: new Date().toISOString(), node: process.version, results: summary }, null, 2)}\n`)
