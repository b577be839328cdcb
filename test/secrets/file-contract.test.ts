import { describeSecretSourceContract, fileFixture } from './contract.js'

describeSecretSourceContract('local secrets file (embedded mode)', {
  kind: 'file',
  capabilities: { seal: false, kubernetes: false, stopStart: false },
  create: fileFixture
})
