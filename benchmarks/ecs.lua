-- wrk's side of the cross-check (benchmarks/crosscheck.py): ECS requests from a file of
-- "Action<TAB>body" lines, taken in turn, with the headers ecs-bench's lean client sends.
local requests = {}
local path = os.getenv("ECS_REQUESTS")
for line in io.lines(path) do
  local action, body = line:match("^([^\t]+)\t(.*)$")
  if action then
    requests[#requests + 1] = wrk.format("POST", "/", {
      ["Content-Type"] = "application/x-amz-json-1.1",
      ["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113." .. action,
      ["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261128/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0",
      ["X-Ecsd-Consistency"] = os.getenv("ECS_CONSISTENCY"),
    }, body)
  end
end
local i = 0
request = function()
  i = i + 1
  return requests[(i - 1) % #requests + 1]
end
