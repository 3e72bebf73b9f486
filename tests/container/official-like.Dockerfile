# An official-like python:3.11-slim for checking contrib/docker/rootfs.py by hand where the
# official image cannot be pulled (as on the project's machines): on the tests' local stand-in
# python:3.11-slim (tests/container/engine.py), CPython is built the way the official image
# builds it: under /usr/local, --enable-shared, the $ORIGIN/../lib rpath, .pyc files deleted.
# (--with-wheel-pkg-dir: pip from Debian's wheels; the source package bundles none.) About
# 2.5 min; not run by the suite.
#
#   docker build -t offl:3.11 -f tests/container/official-like.Dockerfile tests/container
#   docker build -f contrib/docker/Dockerfile --build-arg PYTHON_IMAGE=offl:3.11 \
#       -t twcmaster:offl .
FROM python:3.11-slim
RUN sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/src.list 2>/dev/null || true; \
    cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head; \
    apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev libsqlite3-dev uuid-dev libexpat1-dev dpkg-dev xz-utils >/dev/null
WORKDIR /usr/src
RUN apt-get source -qq --download-only python3.11 >/dev/null 2>&1; ls; tar xf python3.11_*.orig.tar.gz && ls
RUN cd Python-3.11*/ && ./configure --prefix=/usr/local --enable-shared --with-ensurepip=install --with-wheel-pkg-dir=/usr/share/python-wheels -q && \
    make -s -j2 LDFLAGS="-Wl,--strip-all" >/dev/null 2>&1 && rm python && \
    make -s -j2 LDFLAGS="-Wl,--strip-all -Wl,-rpath='\$\$ORIGIN/../lib'" python >/dev/null 2>&1 && \
    make -s install >/dev/null 2>&1 && cd / && rm -rf /usr/src/Python-3.11* && \
    find /usr/local -depth -type f -name '*.pyc' -delete && ldconfig && \
    /usr/local/bin/python3.11 -m ensurepip -q 2>/dev/null || true
RUN rm -f /usr/local/bin/python3 /usr/local/bin/python && ln -s python3.11 /usr/local/bin/python3 && ln -s python3 /usr/local/bin/python && \
    /usr/local/bin/python3 -c "import sys, ssl; print(sys.prefix, sys.version)" && ldd /usr/local/bin/python3.11 && readelf -d /usr/local/bin/python3.11 | grep -i path
