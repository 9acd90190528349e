#!/usr/bin/env bash
# Regenerates the serialized-message seeds in fuzz/corpus/ from the text protos
# here (NAME.MessageType.txtpb) with protoc --encode. Run after changing a
# .txtpb or the protos; the YAML seeds (spec/, history_file/) are plain files.
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=fuzz/corpus
encode() {  # encode TYPE FILE -> stdout
  protoc -Iproto --encode="benchfleet.v1.$1" proto/benchfleet/v1/fleet.proto \
    proto/benchfleet/v1/agent.proto proto/benchfleet/v1/types.proto <"$2"
}
# A bytes field holding $1's bytes, in text format (octal escapes).
text_bytes() { od -An -v -to1 | tr -s ' \n' ' ' | sed 's/ \([0-7]\{3\}\)/\\\1/g; s/ //g'; }

for f in fuzz/seeds/*.AgentMessage.txtpb; do
  encode AgentMessage "$f" >"$corpus/agent_message/$(basename "$f" .AgentMessage.txtpb)"
done

# fleet_request: the first byte picks the method (fuzz/fleet_request_fuzzer.cc).
declare -A method=([SubmitRequest]=0 [CancelExperimentRequest]=4 [SetAgentCordonedRequest]=6
  [GetHistoryRequest]=7 [ImportHistoryRequest]=9 [CreateTokenRequest]=10)
for type in "${!method[@]}"; do
  for f in fuzz/seeds/*."$type".txtpb; do
    { printf "\\$(printf '%03o' "${method[$type]}")"; encode "$type" "$f"; } \
      >"$corpus/fleet_request/$(basename "$f" ."$type".txtpb)"
  done
done
for m in 1 2 3 5 8 11 12 13; do printf "\\$(printf '%03o' $m)" >"$corpus/fleet_request/empty_$m"; done

# open_order: the first byte holds flags (fuzz/open_order_fuzzer.cc); 3 = re-sign
# and take the nonce from the payload, so the seeds open.
for f in fuzz/seeds/*.ControllerMessage.txtpb; do
  { printf '\003'; encode ControllerMessage "$f"; } \
    >"$corpus/open_order/$(basename "$f" .ControllerMessage.txtpb)"
done
for f in fuzz/seeds/*.OrderPayload.txtpb; do
  payload=$(encode OrderPayload "$f" | text_bytes)
  name=$(basename "$f" .OrderPayload.txtpb)
  { printf '\003'; printf 'signed_order { payload: "%s" signature: "x" key_id: "k" }' "$payload" \
      | encode ControllerMessage /dev/stdin; } >"$corpus/open_order/signed_$name"
done
