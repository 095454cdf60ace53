// nightshift worker on Azure Container Apps: `handler worker` (deploy/Dockerfile) consuming
// the queues of a nightshift deployment made by main.bicep, scaled from zero by KEDA
// azure-queue scale rules that read the queue lengths with the worker's managed identity.
//
// Resource-group scope, next to main.bicep's resources (the same resource group):
//
//   az deployment group create -g <rg> -f infra/bicep/worker-containerapps.bicep -p environmentName=<env>
//   azd up                 (deploy/containerapps/azure.yaml: builds the image in the registry below)
//
// With the same environmentName and location as main.bicep, the default names below are
// main.bicep's (storage account, Key Vault, Log Analytics workspace): this template reads
// them as `existing` resources and never changes them. It creates a user-assigned identity
// for the workers with only the data roles a worker needs (main.bicep's least-privilege
// rules: blob data on each container it uses, never the account; queue data on the
// account), a container registry the identity pulls from (no admin user), a Container
// Apps environment (or uses one given by id) and the container app. Storage has shared
// keys disabled; nothing here holds a key, a connection string or a password.
// docs/deploy-worker.md describes it; infra/worker_containerapps_test.go checks it.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Environment name (the azd environment); with main.bicep\'s environment name the default resource names below are main.bicep\'s.')
param environmentName string

@description('Location of the new resources; default: the resource group\'s.')
param location string = resourceGroup().location

@description('The nightshift storage account (main.bicep output AZURE_STORAGE_ACCOUNT_NAME), in this resource group. Empty: main.bicep\'s name for this environment.')
param storageAccountName string = ''

@description('The Key Vault holding the webhook secrets and the key-encryption key (main.bicep output AZURE_KEY_VAULT_NAME). Empty: main.bicep\'s name for this environment.')
param keyVaultName string = ''

@description('Whether main.bicep was deployed with enableEncryption (its key-encryption key nightshift-kek exists): the workers then get Key Vault Crypto User on it and NIGHTSHIFT_ENCRYPTION_KEY_URL.')
param enableEncryption bool = true

@description('Log Analytics workspace the new Container Apps environment sends its logs to. Empty: main.bicep\'s workspace for this environment.')
param logAnalyticsWorkspaceName string = ''

@description('Resource id of an existing Container Apps environment to run in. Empty: create one.')
param containerAppsEnvironmentId string = ''

@description('The worker image (set by azd from SERVICE_WORKER_IMAGE_NAME after its first deploy). Empty: placeholderImage, until `azd deploy` builds and pushes the real one.')
param workerImage string = ''

@description('Image the container app starts with before the first `azd deploy` (no replica runs while the queues are empty: minReplicas is 0).')
param placeholderImage string = 'busybox:stable'

@description('Most replicas the scale rules may start.')
@minValue(1)
@maxValue(300)
param maxReplicas int = 20

@description('Target messages per replica on a job queue (the worker\'s default in-flight budget per queue: host.json batchSize 16 + newBatchThreshold 8).')
param queueLengthPerReplica int = 24

@description('CPU cores per replica (Consumption: 0.25 steps up to 4, memory 2 GiB per core).')
param cpu string = '0.5'

@description('Memory per replica.')
param memory string = '1Gi'

@description('Comma-separated blob containers csv_stats may read (as main.bicep\'s csvContainers; they must exist): the identity gets Storage Blob Data Reader on each.')
param csvContainers string = ''

@description('Comma-separated queues a job callback may name (as main.bicep\'s callbackQueues).')
param callbackQueues string = ''

@description('More settings for the worker, e.g. NIGHTSHIFT_SCHEDULE_<NAME> or NIGHTSHIFT_WORKER_CONCURRENCY. They cannot override the identity, storage, timer and security settings.')
param extraSettings object = {}

@description('Run recurring jobs and the schedule sweeper in the workers too. Off by default: main.bicep\'s function app fires them; on, the workers would fire each occurrence again under their own host id. Turn it on for a fleet without a function app, or together with hostId.')
param workerTimers bool = false

@description('Host id naming the timers\' singleton lease (AzureFunctionsWebHost__hostid): the function app\'s host id lets workers and the function app share one lease. Empty: the worker\'s default.')
param hostId string = ''

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

// The same token as main.bicep's, so that the default names match its resources.
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var storageName = empty(storageAccountName) ? 'st${resourceToken}' : storageAccountName
var vaultName = empty(keyVaultName) ? 'kv-${resourceToken}' : keyVaultName
var workspaceName = empty(logAnalyticsWorkspaceName) ? 'log-${resourceToken}' : logAnalyticsWorkspaceName

// The queues the worker consumes and the scale rules watch: storage.Layout's job queues and
// their poison queues (storage/layout.go; the test compares them).
var queueNames = [
  'jobs-high'
  'jobs-high-poison'
  'jobs'
  'jobs-poison'
  'jobs-low'
  'jobs-low-poison'
]

// The containers a worker writes: storage.Layout's data containers and the Functions host's
// azure-webjobs-hosts (the singleton lease of the timers, shared with a function app).
// Not azure-webjobs-secrets: a worker has no function keys.
var dataContainerNames = [
  'nightshift-status'
  'nightshift-results'
  'nightshift-deadletters'
  'nightshift-payloads'
  'nightshift-batches'
  'nightshift-unique'
  'nightshift-schedule'
  'nightshift-reports'
]
var hostContainerName = 'azure-webjobs-hosts'
var csvContainerNames = filter(map(split(csvContainers, ','), name => trim(name)), name => !empty(name))

// Built-in role definitions (the same GUID in every tenant).
var roleIds = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  acrPull: '7f951dda-4ed3-4680-a7ca-43d0e4d9d1e0'
}

// Settings with defaults that extraSettings may override; the values equal the Go code's
// Default* constants and the worker-mode contract's defaults.
var defaultWorkerSettings = {
  NIGHTSHIFT_SCHEDULE_MAINTENANCE: '0 30 2 * * *'
  NIGHTSHIFT_RETENTION_DAYS: '14'
  NIGHTSHIFT_DEADLETTER_RETENTION_DAYS: '90'
  NIGHTSHIFT_MAX_PAYLOAD_BYTES: '67108864'
  NIGHTSHIFT_WORKER_DRAIN_TIMEOUT: '25s'
}

// The function app's settings (main.bicep's appSettings) for the worker's identity. Later
// union() arguments win: nothing overrides the last object.
var workerSettings = union(defaultWorkerSettings, extraSettings, empty(hostId) ? {} : {
  AzureFunctionsWebHost__hostid: hostId
}, enableEncryption ? {
  NIGHTSHIFT_ENCRYPTION_KEY_URL: kek.properties.keyUri
} : {}, {
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: workerIdentity.properties.clientId
  AZURE_CLIENT_ID: workerIdentity.properties.clientId
  AZURE_TOKEN_CREDENTIALS: 'ManagedIdentityCredential'
  NIGHTSHIFT_WORKER_HEALTH_ADDR: ':8080'
  NIGHTSHIFT_WORKER_TIMERS: workerTimers ? 'true' : 'false'
  NIGHTSHIFT_CSV_CONTAINERS: csvContainers
  NIGHTSHIFT_CALLBACK_QUEUES: callbackQueues
  NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'false'
  NIGHTSHIFT_WEBHOOK_ALLOW_PRIVATE: 'false'
  NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'
})

// Container environment: the settings as values, the webhook secrets as a Key Vault secret
// reference (resolved with the worker identity; never a value in the template).
var workerEnv = concat(map(items(workerSettings), s => {
  name: s.key
  value: s.value
}), [
  {
    name: 'NIGHTSHIFT_WEBHOOK_SECRETS'
    secretRef: 'webhook-secrets'
  }
])

// ---------------------------------------------------------------------------------------
// main.bicep's resources, read only
// ---------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource dataContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for name in dataContainerNames: {
    parent: blobService
    name: name
  }
]

resource hostContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: hostContainerName
}

resource csvContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for name in csvContainerNames: {
    parent: blobService
    name: name
  }
]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource kek 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = if (enableEncryption) {
  parent: vault
  name: 'nightshift-kek'
}

resource webhookSecretsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: 'nightshift-webhook-secrets'
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// ---------------------------------------------------------------------------------------
// Identity and role assignments, each at the narrowest scope that works
// ---------------------------------------------------------------------------------------

resource workerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-worker-${resourceToken}'
  location: location
  tags: tags
}

// Blob data on each container a worker uses, never on the account (Contributor reads,
// writes and deletes blobs; it cannot change ACLs or take ownership).
resource workerBlobDataContributorData 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in dataContainerNames: {
    name: guid(dataContainers[i].id, workerIdentity.id, roleIds.storageBlobDataContributor)
    scope: dataContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
      principalId: workerIdentity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Blob index tags on the status records (docs/storage-layout.md): main.bicep's custom role
// with exactly tags/read, tags/write and filter/action, on the status container only
// (dataContainerNames[0]); without it a worker's status writes go untagged and listings by
// state, kind, queue, batch or time miss its jobs.
resource blobIndexTagsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' existing = {
  name: guid(resourceGroup().id, 'nightshift-blob-index-tags')
}

resource workerBlobIndexTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataContainers[0].id, workerIdentity.id, 'nightshift-blob-index-tags')
  scope: dataContainers[0]
  properties: {
    roleDefinitionId: blobIndexTagsRole.id
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The timers' singleton lease and schedule status live in the host container.
resource workerBlobDataContributorHost 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostContainer.id, workerIdentity.id, roleIds.storageBlobDataContributor)
  scope: hostContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// csv_stats: read-only on each container listed in csvContainers.
resource workerCsvContainerReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in csvContainerNames: {
    name: guid(csvContainer[i].id, workerIdentity.id, roleIds.storageBlobDataReader)
    scope: csvContainer[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataReader)
      principalId: workerIdentity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Receive, renew visibility, delete, move to -poison, re-enqueue retries, and read the queue
// lengths for the scale rules. Account scope for the operator's callback queues, as in
// main.bicep (Message Processor cannot enqueue the next attempt of a retry).
resource workerQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, workerIdentity.id, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Wrap/unwrap with the key-encryption key, scoped to that key alone.
resource workerKeyVaultCryptoUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableEncryption) {
  name: guid(kek.id, workerIdentity.id, roleIds.keyVaultCryptoUser)
  scope: kek
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoUser)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Resolving the webhook secrets' Key Vault reference, scoped to that secret alone.
resource workerKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookSecretsSecret.id, workerIdentity.id, roleIds.keyVaultSecretsUser)
  scope: webhookSecretsSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------
// Container registry: azd pushes the image here (AZURE_CONTAINER_REGISTRY_ENDPOINT), the
// container app pulls it with the worker identity. No admin user, no anonymous pull.
// ---------------------------------------------------------------------------------------

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: 'cr${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
  }
}

resource workerAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, workerIdentity.id, roleIds.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.acrPull)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------
// Container Apps environment (unless one is given) and the worker app
// ---------------------------------------------------------------------------------------

// Logs through Azure Monitor (the diagnostic setting below), so no workspace key is needed.
resource containerAppsEnvironment 'Microsoft.App/managedEnvironments@2025-01-01' = if (empty(containerAppsEnvironmentId)) {
  name: 'cae-${resourceToken}'
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
  }
}

resource environmentDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (empty(containerAppsEnvironmentId)) {
  name: 'to-log-analytics'
  scope: containerAppsEnvironment
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource worker 'Microsoft.App/containerApps@2025-01-01' = {
  name: 'ca-worker-${resourceToken}'
  location: location
  // azd deploy finds the app of the service `worker` by this tag (deploy/containerapps/azure.yaml).
  tags: union(tags, {
    'azd-service-name': 'worker'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${workerIdentity.id}': {}
    }
  }
  properties: {
    environmentId: empty(containerAppsEnvironmentId) ? containerAppsEnvironment.id : containerAppsEnvironmentId
    configuration: {
      // No ingress: the worker takes its work from the queues; nothing calls it.
      activeRevisionsMode: 'Single'
      registries: [
        {
          server: registry.properties.loginServer
          identity: workerIdentity.id
        }
      ]
      secrets: [
        {
          name: 'webhook-secrets'
          keyVaultUrl: webhookSecretsSecret.properties.secretUri
          identity: workerIdentity.id
        }
      ]
    }
    template: {
      // The drain deadline (NIGHTSHIFT_WORKER_DRAIN_TIMEOUT, 25s) plus a 15s margin for the
      // release of jobs still running then and the exit.
      terminationGracePeriodSeconds: 40
      containers: [
        {
          name: 'worker'
          image: empty(workerImage) ? placeholderImage : workerImage
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: workerEnv
          probes: [
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: 8080
              }
              periodSeconds: 10
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: 8080
              }
              periodSeconds: 5
              failureThreshold: 2
            }
          ]
        }
      ]
      // Scale to zero; one KEDA azure-queue rule per queue, reading the queue length with the
      // worker identity (Storage Queue Data Contributor above includes reading it). Poison
      // queues need a replica only to turn their messages into dead letters.
      scale: {
        minReplicas: 0
        maxReplicas: maxReplicas
        rules: [
          for q in queueNames: {
            name: q
            custom: {
              type: 'azure-queue'
              metadata: {
                queueName: q
                queueLength: endsWith(q, '-poison') ? '100' : string(queueLengthPerReplica)
                accountName: storage.name
                cloud: 'AzurePublicCloud'
              }
              identity: workerIdentity.id
            }
          }
        ]
      }
    }
  }
  // The identity holds its roles before the first replica starts.
  dependsOn: [
    workerBlobDataContributorData
    workerBlobDataContributorHost
    workerQueueDataContributor
    workerKeyVaultCryptoUser
    workerKeyVaultSecretsUser
    workerAcrPull
  ]
}

// ---------------------------------------------------------------------------------------
// Outputs (azd keeps them in the environment)
// ---------------------------------------------------------------------------------------

output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.properties.loginServer
output AZURE_CONTAINER_APP_NAME string = worker.name
output AZURE_WORKER_IDENTITY_CLIENT_ID string = workerIdentity.properties.clientId
output AZURE_WORKER_IDENTITY_PRINCIPAL_ID string = workerIdentity.properties.principalId
