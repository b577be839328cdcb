import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { stringify as toYaml } from 'yaml'
import { describe, expect, it, vi } from 'vitest'
import { assembleEngine, type Engine } from '../../src/assemble.js'
import { loadConfig } from '../../src/config.js'
import { sleep } from '../../src/time.js'
import type { BrokerParts } from '../../src/assemble.js'
import type { GrantStore, Lease } from '../../src/store/types.js'
import { tempFile } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from '../support/redis.js'

/** A store that counts its reads, around the real Redis store. */
function countingReads (store: GrantStore): GrantStore & { reads: () => number } {
  let reads = 0
  return Object.assign(Object.create(store) as GrantStore, {
    get: async (key: string) => { reads += 1; return await store.get(key) },
    reads: () => reads
  })
}

/** A promise and the function that resolves it. */
function gate (): { opened: Promise<void>, open: () => void } {
  let open: () => void = () => {}
  const opened = new Promise<void>(resolve => { open = resolve })
  return { opened, open }
}

describe('grant notices between replicas', () => {
  const cleanup = useCleanup()

  async function twoReplicas (kivra: KivraStandIn, wrap: [(store: GrantStore) => GrantStore, (store: GrantStore) => GrantStore], brokerOptions: BrokerParts['options'] = {}): Promise<[Engine, Engine]> {
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
    const engines: Engine[] = []
    for (const wrapStore of wrap) {
      engines.push(cleanup.add(await assembleEngine(config, { log: pino({ level: 'silent' }), options: brokerOptions, wrapStore })))
    }
    return engines as [Engine, Engine]
  }

  it('a replica reads back the grant another replica wrote, once; the writer does not read back its own', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const stores: Array<ReturnType<typeof countingReads>> = []
    const counted = (store: GrantStore): GrantStore => { const wrapped = countingReads(store); stores.push(wrapped); return wrapped }
    const [writer, reader] = await twoReplicas(kivra, [counted, counted])
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

  it('a waiter whose holder fails and announces it before the waiter is registered looks again at once, not after the lease', async () => {
    // The order Redis may deliver them in: the holder's release notice reaches the waiter's subscriber
    // connection before the answer to its own lease question on the commands connection. The holder's
    // lease lives 60 s and the waiter may wait 5 s: a waiter that missed the notice times out.
    const kivra = cleanup.add(await startKivraStandIn())
    kivra.setFault({ kind: 'server-error' }, { times: 1 })
    const holderHasLease = gate()
    const waiterAsked = gate()
    const waiterHeard = gate()
    const holderStore = (store: GrantStore): GrantStore => Object.assign(Object.create(store) as GrantStore, {
      acquireLease: async (key: string, ttlMs: number) => {
        const lease = await store.acquireLease(key, ttlMs)
        holderHasLease.open()
        return lease
      },
      releaseLease: async (lease: Lease, options?: { announce?: boolean }) => {
        await waiterAsked.opened
        await store.releaseLease(lease, options)
      }
    })
    const waiterStore = (store: GrantStore): GrantStore => {
      store.onGrant(() => { waiterHeard.open() })
      return Object.assign(Object.create(store) as GrantStore, {
        leaseRemainingMs: async (key: string) => {
          const remaining = await store.leaseRemainingMs(key)
          waiterAsked.open()
          await waiterHeard.opened
          return remaining
        }
      })
    }
    const [holder, waiter] = await twoReplicas(kivra, [holderStore, waiterStore], { leaseTtlMs: 60_000, waitTimeoutMs: 5000 })

    const failed = holder.broker.getToken('kivra', 60)
    await holderHasLease.opened
    const served = waiter.broker.getToken('kivra', 60)
    await expect(failed).rejects.toMatchObject({ code: 'CB_PROVIDER_UNAVAILABLE' })
    const { grant } = await served
    expect(kivra.isTokenValid(grant.accessToken)).toBe(true)
    expect(kivra.mints).toBe(1)
  })
})
