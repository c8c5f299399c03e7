import matplotlib.pyplot as plt

x = [22, 7, 21, 46, 31, 37, 8]
y = [29, 16, 17, 34, 37, 29, 14]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.scatter(x, y, color="#55A868")
ax.set_title("Height against weight")
ax.set_xlabel("x")
ax.set_ylabel("y")
plt.tight_layout()
plt.show()
