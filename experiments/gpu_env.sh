# Sourced by the experiments/gpu_*.sh device scripts: the carried wheels (.whl/, from gpu_wheels.sh) installed once
# per machine into /tmp/site, ahead of the image's packages, and the repository on the path.
if [ ! -d /tmp/site ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
