#!/bin/sh
# Builds dist/webjob.zip: the continuous WebJob nightshift-worker in the folder layout App
# Service expects (run.sh documents it), to deploy as (part of) the app's content, e.g.
#   az webapp deploy --resource-group <rg> --name <app> --src-path dist/webjob.zip --type zip
# Run from the repository root. Needs Go and zip.
set -eu
out=dist/webjob
job="$out/App_Data/jobs/continuous/nightshift-worker"
rm -rf "$out" dist/webjob.zip
mkdir -p "$job"
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o "$job/handler" ./handler
cp deploy/webjob/run.sh deploy/webjob/settings.job host.json "$job/"
chmod 0755 "$job/handler" "$job/run.sh"
(cd "$out" && zip -q -r ../webjob.zip App_Data)
echo "nightshift: wrote dist/webjob.zip"
