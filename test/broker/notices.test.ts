import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { stringify as toYaml } from 'yaml'
import { describe, expect, it, vi } from 'vitest'
import { assembleEngine, type Engine } from '../../src/assemble.js'
import { loadConfig } from '../../src/config.js'
import { sleep } from '../../src/time.js'
import type { GrantStore } from '../../src/store/types.js'
import { tempFile } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from '../support/redis.js'

/** A store that counts its reads, around the real Redis store. */
function countingReads (store: GrantStore): GrantStore & { reads: () => number } {
  let reads = 0
  return Object.assign(Object.create(store) as GrantStore, {
    get: async (key: string) => { reads += 1; return await store.get(key) },
    reads: () => reads
  })
}

describe('grant notices between replicas', () => {
  const cleanup = useCleanup()

  it('a replica reads back the grant another replica wrote, once; the writer does not read back its own', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const prefix = uniquePrefix('notices')
    cleanup.defer(async () => { await deleteKeys(testRedisUrl(), prefix) })
    const config = loadConfig({
      CREDENTIALS_FILE: tempFile('credentials.yaml', toYaml({ credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url }] })),
      SECRETS_FILE: tempFile('secrets.json', JSON.stringify({ 'secret/kivra': kivra.secret })),
      REDIS_URL: testRedisUrl(),
      REDIS_KEY_PREFIX: prefix,
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      LOG_LEVEL: 'silent'
    })
    const stores: Array<ReturnType<typeof countingReads>> = []
    const engines: Engine[] = []
    for (let i = 0; i < 2; i++) {
      engines.push(cleanup.add(await assembleEngine(config, { log: pino({ level: 'silent' }), wrapStore: store => { const counted = countingReads(store); stores.push(counted); return counted } })))
    }
    const [writer, reader] = engines as [Engine, Engine]
    const [writerStore, readerStore] = stores as [ReturnType<typeof countingReads>, ReturnType<typeof countingReads>]
    // Not started: no proactive refresh runs, so every read below is the one this test causes.
    const { grant } = await writer.broker.getToken('kivra', 60)
    await vi.waitFor(() => { expect(reader.broker.statuses()[0]?.expiresAt).toBe(grant.expiresAt) }, { timeout: 3000, interval: 10 })
    // Both replicas have heard the notice by now (one channel, in order); give the writer's a moment more.
    await sleep(200)
    expect(readerStore.reads()).toBe(1)
    // The writer's reads are its cache miss and the holder's re-check under the lease; not its own notice.
    expect(writerStore.reads()).toBe(2)
    expect(kivra.mints).toBe(1)
  })
})
