#!/usr/bin/env bash
# Rebuilds the committed test and demo clips from public media fetched through
# the package registries only (PyPI scikit-image, Debian opencv-doc).
# Provenance and licences: tests/media/PROVENANCE.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SIGHTLINE_CACHE:-$HOME/.cache/sightline}/media"
mkdir -p "$cache"
cd "$cache"
if [ ! -f sk/skimage/data/coffee.png ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: -d . scikit-image==0.26.0
  python3 -m zipfile -e scikit_image-0.26.0-*.whl sk
fi
if [ ! -f od/usr/share/doc/opencv-doc/examples/data/vtest.avi ]; then
  apt-get download opencv-doc
  dpkg-deb -x opencv-doc_*.deb od
fi
data=sk/skimage/data
vtest=od/usr/share/doc/opencv-doc/examples/data/vtest.avi

od_data=od/usr/share/doc/opencv-doc/examples/data

# One still shown for N seconds, scaled with borders into WxH at 10 fps.
# A bare file name is a scikit-image still; a path is taken as it is.
still() { # file seconds width height
  local f="$1"
  case "$f" in */*) ;; *) f="$data/$f" ;; esac
  echo "filesrc location=$f ! decodebin ! videoconvert ! videoscale add-borders=true ! \
    video/x-raw,format=I420,width=$3,height=$4,pixel-aspect-ratio=1/1 ! \
    imagefreeze num-buffers=$(( $2 * 10 )) ! video/x-raw,framerate=10/1 ! c."
}

enc="x264enc key-int-max=10 bframes=0 speed-preset=medium pass=qual quantizer=26 ! h264parse ! mp4mux"

# Ground truth: 0-10 s coffee (no person), 10-20 s vtest.avi (pedestrians),
# 20-30 s chelsea (a cat). 768x576, 10 fps, a keyframe every second.
gst-launch-1.0 -q concat name=c ! videoconvert ! $enc ! filesink location="$here/ground_truth.mp4" \
  $(still coffee.png 10 768 576) \
  filesrc location=$vtest ! decodebin ! videoconvert ! videorate ! \
    video/x-raw,format=I420,width=768,height=576,framerate=10/1,pixel-aspect-ratio=1/1 ! identity eos-after=100 ! c. \
  $(still chelsea.png 10 768 576)

# Demo: 6 s each of coffee, astronaut (a person), chelsea. 640x480, 10 fps.
gst-launch-1.0 -q concat name=c ! videoconvert ! $enc ! filesink location="$here/demo.mp4" \
  $(still coffee.png 6 640 480) $(still astronaut.png 6 640 480) $(still chelsea.png 6 640 480)
# Several models: 6 s each of rocket (nothing), a car (OpenCV's
# licenseplate_motion.jpg), coffee (no car, no person), astronaut (a person),
# chelsea (a cat). 640x480, 10 fps.
gst-launch-1.0 -q concat name=c ! videoconvert ! $enc ! filesink location="$here/models.mp4" \
  $(still rocket.jpg 6 640 480) $(still $od_data/licenseplate_motion.jpg 6 640 480) \
  $(still coffee.png 6 640 480) $(still astronaut.png 6 640 480) $(still chelsea.png 6 640 480)
# Colour clips for the dual-encoder tests: flat colours, 320x240, 10 fps.
solid() { # 0xRRGGBB seconds
  echo "videotestsrc pattern=solid-color foreground-color=$((0xff000000 | $1)) num-buffers=$(( $2 * 10 )) ! \
    video/x-raw,format=I420,width=320,height=240,framerate=10/1,pixel-aspect-ratio=1/1 ! c."
}
# 0-8 s blue, 8-16 s red, 16-24 s green.
gst-launch-1.0 -q concat name=c ! videoconvert ! $enc ! filesink location="$here/colours.mp4" \
  $(solid 0x1414dc 8) $(solid 0xdc1414 8) $(solid 0x14c814 8)
# 0-8 s a scene tinted red (200,90,90), 8-16 s really red, 16-24 s grey.
gst-launch-1.0 -q concat name=c ! videoconvert ! $enc ! filesink location="$here/tinted.mp4" \
  $(solid 0xc85a5a 8) $(solid 0xe61414 8) $(solid 0x808080 8)
ls -l "$here"/*.mp4
