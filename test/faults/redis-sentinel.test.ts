import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectOneMintPerCycle } from '../broker/amplification.js'
import { startRedisSentinel, topologyTestsCanRun, type TestSentinel } from '../support/redis-topology.js'
import { expectFailoverUnderLoad } from './redis-failover.js'

describe.runIf(topologyTestsCanRun())('three broker processes on Redis Sentinel (master, replica, 3 sentinels)', () => {
  let sentinel: TestSentinel
  beforeAll(async () => { sentinel = await startRedisSentinel() }, 90_000)
  afterAll(async () => { await sentinel?.close() })

  it('mint once per refresh cycle and never hand out an expired token', async () => {
    expect(await expectOneMintPerCycle({ topology: sentinel })).toBe(1)
  }, 60_000)

  it('fault: the Sentinel master is killed under load: served throughout, one mint per process at most, shared again after', async () => {
    await expectFailoverUnderLoad(sentinel, 'redis-sentinel-failover')
  }, 150_000)
})
