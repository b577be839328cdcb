import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectOneMintPerCycle } from '../broker/amplification.js'
import { startRedisCluster, topologyTestsCanRun, type TestCluster } from '../support/redis-topology.js'
import { expectFailoverUnderLoad } from './redis-failover.js'

describe.runIf(topologyTestsCanRun())('three broker processes on a Redis Cluster (3 masters, 3 replicas)', () => {
  let cluster: TestCluster
  beforeAll(async () => { cluster = await startRedisCluster() }, 90_000)
  afterAll(async () => { await cluster?.close() })

  it('mint once per refresh cycle and never hand out an expired token', async () => {
    expect(await expectOneMintPerCycle({ topology: cluster })).toBe(1)
  }, 60_000)

  it('fault: the master of the credential\'s slot is killed under load: served throughout, one mint per process at most, shared again after', async () => {
    await expectFailoverUnderLoad(cluster, 'redis-cluster-failover')
  }, 150_000)
})
