package worker

// DefaultHostJSON is the repository's host.json (TestDefaultHostJSONIsTheRepositorys keeps
// them equal): the queue settings a worker uses when --host-json names no file.
const DefaultHostJSON = `{
  "version": "2.0",
  "logging": {
    "logLevel": {
      "default": "Information"
    }
  },
  "extensionBundle": {
    "id": "Microsoft.Azure.Functions.ExtensionBundle",
    "version": "[4.*, 5.0.0)"
  },
  "customHandler": {
    "description": {
      "defaultExecutablePath": "handler",
      "workingDirectory": "",
      "arguments": []
    },
    "enableForwardingHttpRequest": false
  },
  "functionTimeout": "00:10:00",
  "extensions": {
    "queues": {
      "messageEncoding": "none",
      "batchSize": 16,
      "newBatchThreshold": 8,
      "maxDequeueCount": 5,
      "maxPollingInterval": "00:00:10",
      "visibilityTimeout": "00:00:30"
    }
  }
}
`
