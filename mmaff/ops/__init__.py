# Copyright (c) mmaff contributors. All rights reserved.
