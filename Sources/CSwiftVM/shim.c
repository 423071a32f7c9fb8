#include "CSwiftVM.h"
